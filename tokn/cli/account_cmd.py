"""``tokn login``, ``tokn import``, ``tokn account list|show|remove``, ``tokn headers``.

Thin: parse options, call :mod:`tokn.auth` / the provider classes, render with
rich.  ``asyncio.run`` happens here and only here; httpx is imported lazily so
``tokn proxy env`` stays fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import json
import os
import re
import sys
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from tokn import accounts, config, paths, state
from tokn.accounts import HEALTH_STATE, health_of, local_time
from tokn.cli.common import cli_errors, console, err_console, fail, load_config_or_exit
from tokn.endings import describe
from tokn.errors import ToknError

COPILOT = "github-copilot"
IMPORT_SOURCES = ("gh", "copilot-plugin", "env", "kiro")

account_app = typer.Typer(help="List, inspect and remove pooled accounts.", suggest_commands=False,
                          no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("login")(login_cmd)
    app.command("import")(import_cmd)
    app.command("headers")(headers_cmd)
    app.add_typer(account_app, name="account")


# --- helpers -----------------------------------------------------------------------

def _client(timeout: float = 30.0):
    """The HTTP client ``tokn serve`` would use (``[proxy]``, upstream CA bundle), with a
    shorter timeout: a key verified here travels the same way later."""
    import httpx

    from tokn.runtime import make_client

    client = make_client(load_config_or_exit())
    client.timeout = httpx.Timeout(timeout)
    return client


def _provider_class(provider_id: str):
    from tokn.providers import provider_class

    try:
        return provider_class(provider_id)
    except KeyError as exc:
        raise ToknError(str(exc.args[0]), status=400, code="unknown_provider") from None


def _is_copilot(cls: Any) -> bool:
    from tokn.providers.copilot import CopilotProvider

    return isinstance(cls, type) and issubclass(cls, CopilotProvider)


def _has_display() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _save_account(values: dict[str, Any]) -> str:
    with config.editing() as doc:
        config.add_account(doc, {k: v for k, v in values.items() if v not in (None, "")})
    return str(paths.config_file())


def _existing_accounts() -> list[dict[str, Any]]:
    doc = config.load_document()
    return [dict(t.unwrap()) if hasattr(t, "unwrap") else dict(t)
            for t in doc.get("accounts", [])]


def _default_copilot_id(login: str | None, token: str) -> str:
    accounts = _existing_accounts()
    copilot_ids = {COPILOT, "copilot"}
    for acc in accounts:
        if acc.get("provider") in copilot_ids and (
                (login and acc.get("github_login") == login) or acc.get("github_token") == token):
            return str(acc["id"])
    taken = {a.get("id") for a in accounts}
    if "copilot" not in taken:
        return "copilot"
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", login or "").strip("-")
    if safe:
        return f"copilot-{safe}"
    n = 2
    while f"copilot-{n}" in taken:
        n += 1
    return f"copilot-{n}"


def _default_key_id(provider_id: str, key_field: str, key: str) -> str:
    accounts = _existing_accounts()
    for acc in accounts:
        if acc.get("provider") == provider_id and acc.get(key_field) == key:
            return str(acc["id"])
    taken = {a.get("id") for a in accounts}
    if provider_id not in taken:
        return provider_id
    n = 2
    while f"{provider_id}-{n}" in taken:
        n += 1
    return f"{provider_id}-{n}"


def _call_flexible(fn: Any, **kwargs: Any) -> Any:
    """Call ``fn`` with the keyword arguments it accepts; await it if needed."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    result = fn(**kwargs)
    if inspect.isawaitable(result):
        result = asyncio.run(result)
    return result


def _kiro(func_name: str, **kwargs: Any) -> None:
    try:
        kiro_auth = importlib.import_module("tokn.auth.kiro")
    except ModuleNotFoundError as exc:
        if exc.name != "tokn.auth.kiro":
            raise
        kiro_auth = None
    fn = getattr(kiro_auth, func_name, None)
    if fn is None:
        raise ToknError("Kiro sign-in is not available in this build of tokn "
                        "(tokn.auth.kiro is missing).", status=501, code="unsupported")
    try:
        saves_itself = "save" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        saves_itself = False
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    result = _call_flexible(fn, console=console, **({"save": True} if saves_itself else {}),
                            **kwargs)
    if isinstance(result, config.AccountConfig):
        result = {"id": result.id, "provider": result.provider, "base_url": result.base_url,
                  "refresh_url": result.refresh_url, **result.fields}
    if isinstance(result, dict) and result.get("id"):
        where = str(paths.config_file()) if saves_itself else _save_account(result)
        console.print(f"saved account [bold]{escape(str(result['id']))}[/] (kiro) to "
                      f"{escape(where)}",
                      highlight=False)
    elif isinstance(result, str):
        console.print(f"saved account [bold]{escape(result)}[/] (kiro)", highlight=False)


# --- verification --------------------------------------------------------------------

async def _verify_copilot(account: config.AccountConfig) -> dict[str, Any]:
    """One token exchange (cached for later), then plan/login, failing soft."""
    from tokn.providers.copilot import CopilotProvider

    async with _client() as client:
        provider = CopilotProvider(account, client)
        tok = await provider.copilot_token()
        try:
            info = await asyncio.wait_for(provider.describe(), 15)
        except (TimeoutError, ToknError, OSError):
            info = {}
    return {"sku": tok.sku, "api": tok.api, **info}


async def _verify_key(cls: Any, account: config.AccountConfig) -> int:
    """``list_models()`` with the new key; a clear error when it is refused."""
    import httpx

    async with _client() as client:
        provider = cls(account, client)
        try:
            url = await provider.url_for("models")
        except ToknError:
            raise
        except Exception:  # noqa: BLE001 - only for the message
            url = account.base_url or cls.default_base_url
        try:
            models = await provider.list_models()
        except httpx.TransportError as exc:
            raise ToknError(f"cannot reach {url}: {describe(exc)}; check "
                            "--base-url, or save the key unchecked with --no-verify.",
                            status=502, code="unreachable") from None
        except ToknError as exc:
            if exc.status in (401, 403) or re.search(r"answered (401|403)\b", exc.message):
                raise ToknError(f"the key was rejected by {url}: {exc.message}",
                                status=401, code="key_rejected") from None
            raise ToknError(f"could not verify the key against {url}: {exc.message}; "
                            "use --no-verify to save it anyway.", status=502,
                            code="verify_failed") from None
        except (httpx.HTTPError, ValueError) as exc:
            raise ToknError(f"could not verify the key against {url}: {exc}; "
                            "use --no-verify to save it anyway.", status=502,
                            code="verify_failed") from None
    return len(models)


def _copilot_values(account_id: str, token: str, *, login: str | None, base_url: str | None,
                    refresh_url: str | None, github_url: str | None,
                    github_api_url: str | None) -> dict[str, Any]:
    return {"id": account_id, "provider": COPILOT, "github_token": token,
            "github_login": login, "base_url": base_url, "refresh_url": refresh_url,
            "github_base_url": github_url, "github_api_url": github_api_url}


def _account_from_values(values: dict[str, Any]) -> config.AccountConfig:
    known = {"id", "provider", "base_url", "refresh_url"}
    return config.AccountConfig(
        id=values["id"], provider=values["provider"], base_url=values.get("base_url") or "",
        refresh_url=values.get("refresh_url") or "",
        fields={k: v for k, v in values.items() if k not in known and v not in (None, "")})


def _save_copilot(token: str, *, account_id: str | None, login: str | None, base_url: str | None,
                  refresh_url: str | None, github_url: str | None, github_api_url: str | None,
                  verify: bool, source: str) -> None:
    from tokn.auth.github import DEFAULT_API_URL, api_url_for, fetch_user

    api = github_api_url or (api_url_for(github_url) if github_url else DEFAULT_API_URL)
    if login is None:
        login = asyncio.run(fetch_user(token, api_url=api)).get("login")
    account_id = account_id or _default_copilot_id(login, token)
    values = _copilot_values(account_id, token, login=login, base_url=base_url,
                             refresh_url=refresh_url, github_url=github_url,
                             github_api_url=github_api_url)
    info: dict[str, Any] = {}
    if verify:
        try:
            info = asyncio.run(_verify_copilot(_account_from_values(values)))
        except ToknError as exc:
            hint = ""
            if source == "gh" and exc.code in ("copilot_not_enabled", "github_token_rejected"):
                hint = (" (tokens of the gh CLI are not always accepted by Copilot; "
                        "`tokn login` gets one that is)")
            raise ToknError(exc.message + hint, status=exc.status, code=exc.code) from None
        values["github_login"] = values["github_login"] or info.get("login")
    where = _save_account(values)
    plan = info.get("plan") or info.get("sku")
    who = f" as {values['github_login']}" if values.get("github_login") else ""
    console.print(escape(f"saved account {account_id} (github-copilot{who}"
                         f"{', plan ' + str(plan) if plan else ''}) to {where}"),
                  highlight=False)


# --- login ----------------------------------------------------------------------------

def login_cmd(
    provider: str = typer.Option(COPILOT, "--provider", "-p",
                                 help="Provider id (see `tokn account list`, docs)."),
    account_id: str | None = typer.Option(None, "--id", help="Account id to save under."),
    base_url: str | None = typer.Option(None, "--base-url", help="API base URL override."),
    github_url: str | None = typer.Option(None, "--github-url",
                                          help="GitHub host for the device flow "
                                               "(default https://github.com)."),
    github_api_url: str | None = typer.Option(None, "--github-api-url",
                                              help="GitHub API URL (default "
                                                   "https://api.github.com)."),
    refresh_url: str | None = typer.Option(None, "--refresh-url",
                                           help="Token exchange / refresh URL override."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open a browser."),
    key_stdin: bool = typer.Option(False, "--key-stdin",
                                   help="Read the API key from stdin (for scripts)."),
    no_verify: bool = typer.Option(False, "--no-verify",
                                   help="Save without checking the credential upstream."),
    method: str | None = typer.Option(None, "--method",
                                      help="Kiro: builder-id (default), idc, google, github."),
    start_url: str | None = typer.Option(None, "--start-url",
                                         help="Kiro idc: your https://….awsapps.com/start."),
    region: str | None = typer.Option(None, "--region", help="Kiro: AWS region."),
) -> None:
    """Sign in and save an account: GitHub device flow for Copilot, an API key otherwise."""
    with cli_errors():
        if provider == "kiro":
            _kiro("login", account_id=account_id, base_url=base_url, no_browser=no_browser,
                  refresh_url=refresh_url, method=method, start_url=start_url, region=region)
            return
        cls = _provider_class(provider)
        if _is_copilot(cls):
            token = asyncio.run(_device_login(github_url, no_browser))
            _save_copilot(token, account_id=account_id, login=None, base_url=base_url,
                          refresh_url=refresh_url, github_url=github_url,
                          github_api_url=github_api_url, verify=not no_verify, source="login")
            return
        _key_login(cls, provider, account_id, base_url, refresh_url, key_stdin, no_verify)


async def _device_login(github_url: str | None, no_browser: bool) -> str:
    from tokn.auth import github

    device = await github.start_device_flow(github_url=github_url or github.DEFAULT_GITHUB_URL)
    console.print(f"Open [bold]{escape(device.verification_uri)}[/] and enter the code "
                  f"[bold cyan]{escape(device.user_code)}[/]", highlight=False, soft_wrap=True)
    if not no_browser and _has_display():
        import webbrowser

        with contextlib.suppress(Exception):  # a browser is a convenience only
            webbrowser.open(device.verification_uri_complete or device.verification_uri)
    with console.status("waiting for you to authorise tokn on GitHub…") as status:
        def on_status(what: str) -> None:
            if what == "slow_down":
                status.update("waiting for you to authorise tokn on GitHub "
                              "(GitHub asked to poll more slowly)…")
        token = await github.poll_for_token(device, on_status=on_status)
    console.print("[green]authorised[/]")
    return token


def _key_login(cls: Any, provider: str, account_id: str | None, base_url: str | None,
               refresh_url: str | None, key_stdin: bool, no_verify: bool) -> None:
    if not (base_url or cls.default_base_url):
        raise ToknError(f"provider {provider!r} needs --base-url (it has no default).",
                        status=400, code="missing_base_url")
    name = cls.display_name or provider
    if key_stdin:
        key = sys.stdin.readline().strip()
    else:
        key = typer.prompt(f"{name} API key", hide_input=True).strip()
    if not key:
        raise ToknError("no key given.", status=400, code="missing_credentials")
    account_id = account_id or _default_key_id(provider, cls.key_field, key)
    values = {"id": account_id, "provider": provider, "base_url": base_url,
              "refresh_url": refresh_url, cls.key_field: key}
    count = None
    if not no_verify:
        count = asyncio.run(_verify_key(cls, _account_from_values(values)))
    where = _save_account(values)
    checked = f"key works, {count} models" if count is not None else "not verified"
    console.print(escape(f"saved account {account_id} ({provider}, {checked}) to {where}"),
                  highlight=False)


# --- import -----------------------------------------------------------------------------

def _no_env_vars(provider: str) -> str:
    """Why ``--from env`` has nothing to read for ``provider``, and what to do instead."""
    if provider == "kiro":
        return ("Kiro accounts are not read from environment variables (a Kiro sign-in is "
                "a refresh token plus its client and region): use `tokn import --from kiro` "
                "for the Kiro IDE's or kiro-cli's sign-in, or `tokn login --provider kiro`.")
    return (f"provider {provider!r} has no standard environment variable; name the one "
            "holding the key with --env-var NAME.")


def import_cmd(
    source: str = typer.Option(..., "--from",
                               help="Where to import from: gh, copilot-plugin, env, kiro."),
    provider: str = typer.Option(COPILOT, "--provider", "-p",
                                 help="Provider the imported key is for (env only)."),
    env_var: str | None = typer.Option(None, "--env-var",
                                       help="Variable to read (env; default: the provider's)."),
    account_id: str | None = typer.Option(None, "--id", help="Account id to save under."),
    host: str = typer.Option("github.com", "--host", help="GitHub host to look up (gh, plugin)."),
    base_url: str | None = typer.Option(None, "--base-url", help="API base URL override."),
    github_url: str | None = typer.Option(None, "--github-url", help="GitHub host override."),
    github_api_url: str | None = typer.Option(None, "--github-api-url",
                                              help="GitHub API URL override."),
    refresh_url: str | None = typer.Option(None, "--refresh-url",
                                           help="Token exchange / refresh URL override."),
    no_verify: bool = typer.Option(False, "--no-verify",
                                   help="Save without checking the credential upstream."),
    path: str | None = typer.Option(None, "--path",
                                    help="Kiro: the token file / kiro-cli database to read."),
) -> None:
    """Import a token another tool already has (gh CLI, Copilot plugin, env var, Kiro)."""
    from tokn.auth import importers

    with cli_errors():
        if source not in IMPORT_SOURCES:
            raise ToknError(f"unknown source {source!r}; use one of: {', '.join(IMPORT_SOURCES)}.",
                            status=400)
        if source == "kiro":
            from pathlib import Path

            _kiro("import_account", account_id=account_id, base_url=base_url,
                  refresh_url=refresh_url, path=Path(path).expanduser() if path else None)
            return
        if source == "gh":
            found, cls = importers.from_gh(host=host), _provider_class(COPILOT)
        elif source == "copilot-plugin":
            found, cls = importers.from_copilot_plugin(host=host), _provider_class(COPILOT)
        else:
            cls = _provider_class(provider)
            names = [env_var] if env_var else list(cls.env_vars)
            if not names:
                raise ToknError(_no_env_vars(provider), status=400, code="no_env_vars")
            found = importers.from_env(names)
        console.print(escape(f"found a token in {found.source}: {config.mask(found.token)}"),
                      highlight=False)
        if _is_copilot(cls):
            _save_copilot(found.token, account_id=account_id, login=found.user,
                          base_url=base_url, refresh_url=refresh_url, github_url=github_url,
                          github_api_url=github_api_url, verify=not no_verify, source=source)
            return
        pid = cls.id if provider in cls.ids else provider
        account_id = account_id or _default_key_id(pid, cls.key_field, found.token)
        values = {"id": account_id, "provider": pid, "base_url": base_url,
                  "refresh_url": refresh_url, cls.key_field: found.token}
        if not (base_url or cls.default_base_url):
            raise ToknError(f"provider {pid!r} needs --base-url (it has no default).",
                            status=400, code="missing_base_url")
        if not no_verify:
            asyncio.run(_verify_key(cls, _account_from_values(values)))
        where = _save_account(values)
        console.print(escape(f"saved account {account_id} ({pid}) to {where}"),
                      highlight=False)


# --- account list / show / remove ---------------------------------------------------------

def _credential(acc: config.AccountConfig) -> str:
    try:
        key_field = _provider_class(acc.provider).key_field
    except ToknError:
        key_field = ""
    value = acc.fields.get(key_field) if key_field else None
    if not value:
        value = next((v for k, v in acc.fields.items()
                      if config.is_secret_key(k) and isinstance(v, str) and v), "")
    return config.mask(str(value)) if value else "-"


def _plan(acc_id: str, info: dict[str, Any], tokens: dict[str, Any]) -> str | None:
    entry = info.get(acc_id) if isinstance(info.get(acc_id), dict) else {}
    plan = entry.get("plan")
    if not plan and isinstance(tokens.get(acc_id), dict):
        plan = tokens[acc_id].get("sku")
    return str(plan) if plan else None


def _summary(acc: config.AccountConfig, health: dict[str, Any], info: dict[str, Any],
             tokens: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": acc.id,
        "provider": acc.provider,
        "enabled": acc.enabled,
        "plan": _plan(acc.id, info, tokens),
        "credential": _credential(acc),
        "health": health_of(health.get(acc.id), enabled=acc.enabled),
    }


@account_app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every account with its plan and health (secrets masked)."""
    cfg = load_config_or_exit()
    health, info, tokens = (state.read(HEALTH_STATE), state.read("account-info"),
                            state.read("copilot-tokens"))
    rows = [_summary(a, health, info, tokens) for a in cfg.accounts]
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        console.print("no accounts yet; add one with `tokn login` or `tokn import`.")
        return
    table = Table("id", "provider", "plan", "credential", "health")
    for col in table.columns:
        col.overflow = "fold"
    for row in rows:
        status = row["health"]["status"]
        color = {"ok": "green", "disabled": "dim", "failing": "red"}.get(status, "yellow")
        table.add_row(escape(row["id"]), escape(row["provider"]), escape(row["plan"] or "-"),
                      escape(row["credential"]), f"[{color}]{escape(row['health']['text'])}[/]")
    console.print(table)


async def _describe(acc: config.AccountConfig, timeout: float) -> dict[str, Any]:
    cls = _provider_class(acc.provider)
    async with _client(timeout) as client:
        provider = cls(acc, client)
        return await asyncio.wait_for(provider.describe(), timeout)


def _fmt(value: Any) -> str:
    """A cell value: strings as they are, the rest as JSON; rich markup escaped."""
    return escape(value if isinstance(value, str) else json.dumps(value, default=str))


@account_app.command("show")
def show_cmd(
    account_id: str = typer.Argument(..., help="Account id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    live: bool = typer.Option(True, "--live/--no-live",
                              help="Ask the provider for plan/quota now."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds to wait for live facts."),
) -> None:
    """One account: fields (secrets masked), overrides, health, live plan/quota."""
    cfg = load_config_or_exit()
    acc = cfg.account(account_id)
    if acc is None:
        raise fail(f"no account with id {account_id!r}; see `tokn account list`.")
    health, info, tokens = (state.read(HEALTH_STATE), state.read("account-info"),
                            state.read("copilot-tokens"))
    data: dict[str, Any] = {
        **_summary(acc, health, info, tokens),
        "base_url": acc.base_url or None,
        "refresh_url": acc.refresh_url or None,
        "models": acc.models,
        "settings": config.masked(acc.settings),
        "fields": config.masked(acc.fields),
    }
    describe: dict[str, Any] = {}
    describe_error = None
    if live:
        try:
            describe = asyncio.run(_describe(acc, timeout))
        except TimeoutError:
            describe_error = f"no answer within {timeout:g}s"
        except Exception as exc:  # noqa: BLE001 - failing soft is the point
            describe_error = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    data["live"] = config.masked(describe)
    if describe_error:
        data["live_error"] = describe_error
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    table = Table("key", "value", title=f"account {acc.id}", title_justify="left",
                  show_header=False)
    for col in table.columns:
        col.overflow = "fold"
    for key in ("id", "provider", "enabled", "plan", "base_url", "refresh_url"):
        if data.get(key) not in (None, ""):
            table.add_row(key, _fmt(data[key]))
    if acc.models:
        table.add_row("models", escape(", ".join(acc.models)))
    for key, value in config.flatten(data["fields"]):
        table.add_row(escape(key), _fmt(value))
    for key, value in config.flatten(data["settings"]):
        table.add_row(escape(f"settings.{key}"), _fmt(value))
    table.add_row("health", escape(data["health"]["text"]))
    if data["health"].get("last_ok"):
        table.add_row("last ok", local_time(float(data["health"]["last_ok"])))
    for key, value in _live_rows(data["live"], {"plan": data.get("plan")}):
        table.add_row(key, value)
    if describe_error:
        table.add_row("live", f"[yellow]unavailable: {escape(describe_error)}[/]")
    console.print(table)


def _live_rows(live: dict[str, Any], shown: dict[str, Any] | None = None
               ) -> list[tuple[str, str]]:
    """Rows for the live facts of ``describe()`` (minus what ``shown`` already
    says), quotas spelled out."""
    rows: list[tuple[str, str]] = []
    shown = dict(shown or {})
    if "access_type_sku" in live:
        shown["sku"] = live["access_type_sku"]
    quotas = live.get("quotas") if isinstance(live.get("quotas"), dict) else {}
    for key, value in live.items():
        if key == "quotas" or value in ([], {}, None, "") or \
                (key in shown and shown[key] == value):
            continue
        if key.endswith("_expires_at") and isinstance(value, (int, float)):
            value = local_time(value)
        if isinstance(value, dict):
            rows.extend((escape(f"{key}.{k}"), _fmt(v)) for k, v in config.flatten(value))
        else:
            rows.append((escape(key), _fmt(value)))
    for name, q in quotas.items():
        if not isinstance(q, dict):
            continue
        if q.get("unlimited"):
            text = "unlimited"
        else:
            text = f"{q.get('remaining')}/{q.get('entitlement')} left"
            if q.get("percent_remaining") is not None:
                text += f" ({float(q['percent_remaining']):.0f}%)"
            if q.get("overage_permitted"):
                text += ", overage permitted"
        rows.append((f"quota {escape(str(name))}", escape(text)))
    return rows


@account_app.command("remove")
def remove_cmd(
    account_id: str = typer.Argument(..., help="Account id."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Remove an account from the config and drop its cached tokens and health."""
    with cli_errors():
        doc = config.load_document()
        ids = [t.get("id") for t in doc.get("accounts", [])]
        if account_id not in ids:
            raise fail(f"no account with id {account_id!r}; see `tokn account list`.")
        if not yes:
            typer.confirm(f"Remove account {account_id!r}?", abort=True)
        if accounts.remove(account_id) is None:
            raise fail(f"no account with id {account_id!r}; see `tokn account list`.")
        where = paths.config_file()
    console.print(escape(f"removed account {account_id} from {where}"), highlight=False)


# --- headers ----------------------------------------------------------------------------

def headers_cmd(
    account_id: str | None = typer.Option(None, "--account", "-a",
                                          help="Copilot account id (default: the first)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The identity headers tokn sends to Copilot for an account (token masked)."""
    cfg = load_config_or_exit()
    with cli_errors():
        candidates = [a for a in cfg.accounts
                      if (account_id is None or a.id == account_id)]
        if account_id is not None and not candidates:
            raise fail(f"no account with id {account_id!r}; see `tokn account list`.")
        chosen = None
        for acc in candidates:
            try:
                cls = _provider_class(acc.provider)
            except ToknError:
                continue
            if _is_copilot(cls) and (account_id is not None or acc.enabled):
                chosen = acc
                break
        if chosen is None:
            if account_id is not None:
                raise fail(f"account {account_id!r} is not a GitHub Copilot account.")
            raise fail("no GitHub Copilot account; add one with `tokn login`.")
        headers, error = asyncio.run(_resolved_headers(chosen))
    if as_json:
        typer.echo(json.dumps({"account": chosen.id, "headers": headers,
                               **({"error": error} if error else {})}, indent=2))
        return
    console.print(escape(f"# account {chosen.id}"), highlight=False)
    for name, value in headers.items():
        console.print(escape(f"{name}: {value}"), highlight=False, soft_wrap=True)
    if error:
        err_console.print(f"[yellow]warning:[/] no Copilot token: {escape(error)}",
                          highlight=False)


async def _resolved_headers(acc: config.AccountConfig) -> tuple[dict[str, str], str | None]:
    cls = _provider_class(acc.provider)
    async with _client() as client:
        provider = cls(acc, client)
        try:
            return await provider.resolved_headers(masked=True), None
        except ToknError as exc:
            headers = {**provider.static_headers(), **provider.request_headers("chat", {}),
                       "authorization": "(unavailable)"}
            return headers, exc.message
