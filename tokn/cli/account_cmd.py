"""``tokn account list|show|remove`` and ``tokn headers``.

Thin: parse options, call :mod:`tokn.accounts` / the provider classes, render
with rich.  ``asyncio.run`` happens here and only here; httpx is imported
lazily.  Signing in and importing are :mod:`tokn.cli.login_cmd`'s.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from tokn import accounts, config, paths, state
from tokn.accounts import HEALTH_STATE, health_of, local_time
from tokn.cli.common import (
    cli_errors,
    console,
    err_console,
    fail,
    load_config_or_exit,
    tell_running,
)
from tokn.errors import ToknError
from tokn.providers import Provider, provider_class, provider_classes

account_app = typer.Typer(help="List, inspect, enable, disable and remove pooled accounts.",
                          suggest_commands=False, no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("headers")(headers_cmd)
    app.add_typer(account_app, name="account")


def _client(timeout: float = 30.0):
    """The HTTP client ``tokn serve`` would use (``[proxy]``, upstream CA bundle)."""
    import httpx

    from tokn.runtime import make_client

    client = make_client(load_config_or_exit())
    client.timeout = httpx.Timeout(timeout)
    return client


def _provider_class(provider_id: str) -> type[Provider]:
    try:
        return provider_class(provider_id)
    except KeyError as exc:
        raise ToknError(str(exc.args[0]), status=400, code="unknown_provider") from None


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


def _plan(acc: config.AccountConfig) -> str | None:
    """The plan known without asking upstream (what the provider cached)."""
    try:
        plan = _provider_class(acc.provider).cached_facts(acc.id).get("plan")
    except ToknError:
        return None
    return str(plan) if plan else None


def _summary(acc: config.AccountConfig, health: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": acc.id,
        "provider": acc.provider,
        "enabled": acc.enabled,
        "plan": _plan(acc),
        "credential": _credential(acc),
        "health": health_of(health.get(acc.id), enabled=acc.enabled),
    }


@account_app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every account with its plan and health (secrets masked)."""
    cfg = load_config_or_exit()
    health = state.read(HEALTH_STATE)
    rows = [_summary(a, health) for a in cfg.accounts]
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
    data: dict[str, Any] = {
        **_summary(acc, state.read(HEALTH_STATE)),
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
            describe_error = (exc.message if isinstance(exc, ToknError) else str(exc)) \
                or type(exc).__name__
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
    tell_running()


def _switch(account_id: str, enabled: bool) -> None:
    with cli_errors():
        changed = accounts.set_enabled(account_id, enabled)
    word = "enabled" if enabled else "disabled"
    if not changed:
        console.print(escape(f"account {account_id} is already {word}"), highlight=False)
        return
    console.print(escape(f"{word} account {account_id} in {paths.config_file()}"),
                  highlight=False)
    tell_running()


@account_app.command("enable")
def enable_cmd(account_id: str = typer.Argument(..., help="Account id.")) -> None:
    """Put an account back into rotation."""
    _switch(account_id, True)


@account_app.command("disable")
def disable_cmd(account_id: str = typer.Argument(..., help="Account id.")) -> None:
    """Take an account out of rotation (it stays in the config)."""
    _switch(account_id, False)


# --- headers ----------------------------------------------------------------------------

def headers_cmd(
    account_id: str | None = typer.Option(None, "--account", "-a",
                                          help="Copilot account id (default: the first)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The identity headers tokn sends to Copilot for an account (token masked)."""
    cfg = load_config_or_exit()
    kinds = " or ".join(c.display_name or c.id for c in provider_classes() if c.shows_identity)
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
            if cls.shows_identity and (account_id is not None or acc.enabled):
                chosen = acc
                break
        if chosen is None:
            if account_id is not None:
                raise fail(f"account {account_id!r} is not a {kinds} account.")
            raise fail(f"no {kinds} account; add one with `tokn login`.")
        headers, error = asyncio.run(_resolved_headers(chosen))
    if as_json:
        typer.echo(json.dumps({"account": chosen.id, "headers": headers,
                               **({"error": error} if error else {})}, indent=2))
        return
    console.print(escape(f"# account {chosen.id}"), highlight=False)
    for name, value in headers.items():
        console.print(escape(f"{name}: {value}"), highlight=False, soft_wrap=True)
    if error:
        err_console.print(f"[yellow]warning:[/] no credential: {escape(error)}",
                          highlight=False)


async def _resolved_headers(acc: config.AccountConfig) -> tuple[dict[str, str], str | None]:
    cls = _provider_class(acc.provider)
    async with _client() as client:
        provider = cls(acc, client)
        try:
            return await provider.resolved_headers(masked=True), None
        except ToknError as exc:
            return {**provider.call_headers("chat"), "authorization": "(unavailable)"}, \
                exc.message
