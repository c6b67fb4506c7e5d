"""``tokn login`` and ``tokn import``: one command each, for every provider.

The options of a provider's sign-in and imports are the provider's own
(``login_options`` / ``import_options``, :mod:`tokn.providers.setup`): these
commands offer every provider's, refuse one the chosen provider does not
take, and hand the others to its ``login()`` / ``import_()`` as keywords.
Choosing the id, verifying and saving are :func:`tokn.accounts.add`'s.
``asyncio.run`` happens here and only here.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import typer
from rich.markup import escape

from tokn import accounts, config
from tokn.cli.common import cli_errors, console, load_config_or_exit, tell_running
from tokn.errors import ToknError
from tokn.providers import (
    DEFAULT_PROVIDER,
    Provider,
    import_sources,
    provider_class,
    provider_classes,
)
from tokn.providers.setup import Credentials, Option, Setup


def register(app: typer.Typer) -> None:
    classes = provider_classes()
    app.command("login", help=_LOGIN_HELP)(_command(
        _login_cmd, _LOGIN_PARAMS, [o for c in classes for o in c.login_options]))
    app.command("import", help=_IMPORT_HELP)(_command(
        _import_cmd, _IMPORT_PARAMS, [o for c in classes for o in c.import_options]))


# --- the commands' options: generic ones, then every provider's ----------------------

def _param(name: str, default: Any, annotation: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=annotation)


_PROVIDER = _param("provider", typer.Option(None, "--provider", "-p", help=(
    f"Provider id (default {DEFAULT_PROVIDER}; see the README's provider table).")), str | None)
_ID = _param("account_id", typer.Option(None, "--id", help="Account id to save under."),
             str | None)
_BASE_URL = _param("base_url", typer.Option(None, "--base-url", help="API base URL override."),
                   str | None)
_REFRESH_URL = _param("refresh_url", typer.Option(
    None, "--refresh-url", help="Token exchange / refresh URL override."), str | None)
_NO_VERIFY = _param("no_verify", typer.Option(
    False, "--no-verify", help="Save without checking the credential upstream."), bool)
_SOURCE = _param("source", typer.Option(..., "--from", help=(
    "Where to import from: " + ", ".join(import_sources()) + ".")), str)

_LOGIN_HELP = ("Sign in and save an account: GitHub device flow for Copilot, a device code "
               "or browser for Kiro, an API key otherwise.")
_IMPORT_HELP = ("Import a token another tool already has (gh CLI, Copilot plugin, env var, "
                "Kiro).")
_LOGIN_PARAMS = [_PROVIDER, _ID, _BASE_URL, _REFRESH_URL, _NO_VERIFY]
_IMPORT_PARAMS = [_SOURCE, _PROVIDER, _ID, _BASE_URL, _REFRESH_URL, _NO_VERIFY]


def _merged(options: list[Option]) -> list[Option]:
    """One option per name: providers sharing one (``--no-browser``) must agree on
    its kind; differing help texts are joined."""
    out: dict[str, Option] = {}
    for opt in options:
        seen = out.get(opt.name)
        if seen is None:
            out[opt.name] = opt
        elif seen.flag != opt.flag:
            raise TypeError(f"providers disagree whether {opt.cli} is a switch")
        elif opt.help not in seen.help:
            out[opt.name] = Option(opt.name, f"{seen.help} {opt.help}", opt.flag)
    return list(out.values())


def _command(run: Callable[..., None], generic: list[inspect.Parameter],
             options: list[Option]) -> Callable[..., None]:
    """``run(**values)`` as a typer command taking ``generic`` and ``options``."""
    def command(**values: Any) -> None:
        run(**values)

    params = list(generic)
    for opt in _merged(options):
        default = typer.Option(False if opt.flag else None, opt.cli, help=opt.help)
        params.append(_param(opt.name, default, bool if opt.flag else str | None))
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = run.__doc__
    return command


def _given(cls: type[Provider], declared: tuple[Option, ...], values: dict[str, Any],
           usage: str) -> dict[str, Any]:
    """The keywords for ``cls``: the options given that it declares.  One it does
    not take is an error naming those it does."""
    names = {o.name for o in declared}
    extra = [name for name, value in values.items()
             if value not in (None, False) and name not in names]
    if extra:
        takes = ", ".join(o.cli for o in declared) or "none"
        flags = ", ".join("--" + name.replace("_", "-") for name in extra)
        raise ToknError(f"{flags} does not apply to `{usage}` (its options: {takes}).",
                        status=400, code="bad_option")
    return {name: value for name, value in values.items() if name in names}


# --- running them ------------------------------------------------------------------------

def _provider_class(provider_id: str) -> type[Provider]:
    try:
        return provider_class(provider_id)
    except KeyError as exc:
        raise ToknError(str(exc.args[0]), status=400, code="unknown_provider") from None


def setup() -> Setup:
    """Sign-ins talk to the person through the CLI's console."""
    return Setup(say=lambda text: console.print(text, highlight=False, markup=False,
                                                soft_wrap=True),
                 ask_secret=lambda label: typer.prompt(label, hide_input=True),
                 waiting=_waiting)


@contextlib.contextmanager
def _waiting(text: str) -> Iterator[Callable[[str], None]]:
    with console.status(text) as status:
        yield lambda new: status.update(new)


@contextlib.asynccontextmanager
async def _verifier(verify: bool) -> AsyncIterator[Any]:
    """The HTTP client ``tokn serve`` would use (``[proxy]``, upstream CA bundle),
    with a shorter timeout: a key verified here travels the same way later."""
    if not verify:
        yield None
        return
    import httpx

    from tokn.runtime import make_client

    client = make_client(load_config_or_exit())
    client.timeout = httpx.Timeout(30.0)
    async with client:
        yield client


async def _add(cls: type[Provider], found: Callable[[], Any], *, account_id: str | None,
               base_url: str | None, refresh_url: str | None,
               verify: bool) -> tuple[Credentials, accounts.Added]:
    creds = await found()
    async with _verifier(verify) as client:
        added = await accounts.add(cls, creds, account_id=account_id, base_url=base_url,
                                   refresh_url=refresh_url, client=client)
    return creds, added


def _report(cls: type[Provider], added: accounts.Added, verify: bool) -> None:
    note = added.verified.note if added.verified is not None else ""
    if not verify:
        note = "not verified"
    console.print(escape(f"saved account {added.account_id} ({cls.id}{', ' + note if note else ''})"
                         f" to {added.path}"), highlight=False)
    tell_running()


def _login_cmd(*, provider: str | None, account_id: str | None, base_url: str | None,
               refresh_url: str | None, no_verify: bool, **options: Any) -> None:
    """Sign in and save an account: GitHub device flow for Copilot, a device code or
    browser for Kiro, an API key otherwise."""
    with cli_errors():
        cls = _provider_class(provider or DEFAULT_PROVIDER)
        kwargs = _given(cls, cls.login_options, options, f"tokn login --provider {cls.id}")
        accounts.check_base_url(cls, base_url)
        _, added = asyncio.run(_add(cls, lambda: cls.login(setup(), **kwargs),
                                    account_id=account_id, base_url=base_url,
                                    refresh_url=refresh_url, verify=not no_verify))
    _report(cls, added, not no_verify)


def _import_cmd(*, source: str, provider: str | None, account_id: str | None,
                base_url: str | None, refresh_url: str | None, no_verify: bool,
                **options: Any) -> None:
    """Import a token another tool already has (gh CLI, Copilot plugin, env var, Kiro)."""
    with cli_errors():
        sources = import_sources()
        if source not in sources:
            raise ToknError(f"unknown source {source!r}; use one of: {', '.join(sources)}.",
                            status=400)
        owner = sources[source]
        cls = owner or _provider_class(provider or DEFAULT_PROVIDER)
        if owner is not None and provider and _provider_class(provider) is not owner:
            raise ToknError(f"--from {source} imports a {owner.id} account; "
                            f"--provider {provider} does not apply.", status=400)
        if source not in cls.import_sources:
            raise ToknError(_not_from(cls, source), status=400, code="no_env_vars")
        kwargs = _given(cls, cls.import_options, options, f"tokn import --from {source}")
        accounts.check_base_url(cls, base_url)

        async def found() -> Credentials:
            creds = await cls.import_(source, setup(), **kwargs)
            console.print(escape(f"found a token in {creds.source}: "
                                 f"{config.mask(str(creds.fields.get(cls.key_field) or ''))}"),
                          highlight=False)
            return creds

        _, added = asyncio.run(_add(cls, found, account_id=account_id, base_url=base_url,
                                    refresh_url=refresh_url, verify=not no_verify))
    _report(cls, added, not no_verify)


def _not_from(cls: type[Provider], source: str) -> str:
    """Why ``cls`` cannot be imported from ``source``, and what to do instead."""
    ways = [f"`tokn import --from {s}`" for s in cls.import_sources] + \
        [f"`tokn login --provider {cls.id}`"]
    what = "environment variables" if source == "env" else source
    return (f"{cls.display_name or cls.id} accounts are not read from {what}: use "
            f"{' or '.join(ways)}.")
