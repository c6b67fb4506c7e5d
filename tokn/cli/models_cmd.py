"""``tokn models`` (what each account serves, the aliases) and ``tokn models
resolve ID`` (what an id resolves to, and why).

Thin: list each enabled account's models with its provider, then
:func:`tokn.resolve.resolve` decides, as the pool does for a request.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from tokn.cli.common import cli_errors, console, fail, load_config_or_exit
from tokn.config import Config
from tokn.errors import ToknError
from tokn.providers import provider_class
from tokn.resolve import Served, is_glob, resolve, served_models

models_app = typer.Typer(help="What each account serves, the aliases, and what a model id "
                         "resolves to.", suggest_commands=False, invoke_without_command=True)
FORMATS = ("chat", "messages", "responses")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


@dataclass
class Listing:
    """One account's models (or why it could not list them)."""

    account: str
    provider: str
    models: list[tuple[str, frozenset[str]]]
    error: str = ""


async def _list_one(account: Any, client: Any, timeout: float) -> Listing:
    try:
        provider = provider_class(account.provider)(account, client)
        models = await asyncio.wait_for(provider.models(), timeout)
    except KeyError as exc:
        return Listing(account.id, account.provider, [], str(exc.args[0]))
    except TimeoutError:
        return Listing(account.id, account.provider, [],
                       f"did not list its models within {timeout:g} s")
    except ToknError as exc:
        return Listing(account.id, account.provider, [], exc.message)
    return Listing(account.id, account.provider,
                   [(m.id, provider.model_formats(m)) for m in models])


async def _list_all(cfg: Config, timeout: float) -> list[Listing]:
    import httpx

    from tokn.runtime import make_client

    client = make_client(cfg)
    client.timeout = httpx.Timeout(timeout)
    async with client:
        return list(await asyncio.gather(*(_list_one(a, client, timeout)
                                           for a in cfg.accounts if a.enabled)))


def _served(listings: list[Listing]) -> list[Served]:
    return served_models(pair for listing in listings for pair in listing.models)


@models_app.callback()
def list_cmd(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds each account may take "
                                  "to list its models."),
) -> None:
    """List what each account serves, the aliases and the fallback rule."""
    if ctx.invoked_subcommand is not None:
        return
    cfg = load_config_or_exit()
    with cli_errors():
        listings = asyncio.run(_list_all(cfg, timeout))
    aliases = cfg.models.aliases
    served = [m.id for m in _served(listings)]
    alias_rows = [{"alias": k, "target": v, "glob": is_glob(k),
                   "resolves_to": None if is_glob(k) else resolve(v, _served(listings), {},
                                                                   "strict").model}
                  for k, v in aliases.items()]
    if as_json:
        typer.echo(json.dumps({
            "accounts": [{"account": x.account, "provider": x.provider, "error": x.error or None,
                          "models": [{"id": m, "formats": sorted(f)} for m, f in x.models]}
                         for x in listings],
            "aliases": alias_rows, "fallback": cfg.models.fallback}, indent=2))
        return
    if not listings:
        raise fail("no accounts are configured; add one with `tokn login`.")
    table = Table(title="models by account", title_justify="left")
    for column in ("account", "provider", "models"):
        table.add_column(column)
    for x in listings:
        models = f"[red]{escape(x.error)}[/]" if x.error else \
            escape(", ".join(m for m, _ in x.models))
        table.add_row(escape(x.account), escape(x.provider), models)
    console.print(table)
    if alias_rows:
        aliases_table = Table(title="aliases ([models.aliases])", title_justify="left")
        for column in ("alias", "target", "served as"):
            aliases_table.add_column(column)
        for row in alias_rows:
            shown = "(glob)" if row["glob"] else row["resolves_to"] or "[yellow]not served[/]"
            aliases_table.add_row(escape(row["alias"]), escape(row["target"]), shown)
        console.print(aliases_table)
    console.print(f"fallback: {cfg.models.fallback}  ({len(served)} models served)")


@models_app.command("resolve")
def resolve_cmd(
    model: str = typer.Argument(..., help="The model id a client asks for."),
    fmt: str = typer.Option("chat", "--format", help="The caller's API: chat, messages "
                            "or responses (the nearest GPT prefers models served in it)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds each account may take "
                                  "to list its models."),
) -> None:
    """Say what MODEL resolves to and why (exit 1 when it does not resolve)."""
    if fmt not in FORMATS:
        raise fail(f"--format must be one of: {', '.join(FORMATS)}; got {fmt!r}.")
    cfg = load_config_or_exit()
    with cli_errors():
        listings = asyncio.run(_list_all(cfg, timeout))
    got = resolve(model, _served(listings), cfg.models.aliases, cfg.models.fallback, fmt)
    accounts = [x.account for x in listings if any(m == got.model for m, _ in x.models)]
    failing = {x.account: x.error for x in listings if x.error}
    if as_json:
        typer.echo(json.dumps({"requested": model, "model": got.model, "how": got.how,
                               "why": got.why, "accounts": accounts,
                               "failing_accounts": failing}, indent=2))
    elif got.model is not None:
        console.print(f"{escape(model)} -> {escape(got.model)}  ({escape(got.why)}; "
                      f"accounts: {escape(', '.join(accounts))})", highlight=False)
    else:
        console.print(f"{escape(model)} does not resolve: {escape(got.why)}", highlight=False)
    for account, error in failing.items():
        console.print(f"[yellow]note:[/] account {escape(account)} could not list its "
                      f"models: {escape(error)}", highlight=False)
    if got.model is None:
        raise typer.Exit(1)
