"""The ``tokn`` command: a typer app assembled from one module per command group.

Command modules are imported when the app is built, but each keeps its heavy
imports (mitmproxy, uvicorn, httpx) inside the command functions so that
``tokn proxy env``, run at every shell start, stays fast.
"""

from __future__ import annotations

import typer

from tokn import __version__

app = typer.Typer(
    name="tokn",
    help="Use your AI subscriptions (GitHub Copilot, Kiro, Z.ai, API keys) from any tool: "
    "a local MITM proxy and an OpenAI/Anthropic-compatible API over one account pool.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tokn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """tokn: one local gateway for all your AI subscriptions."""


def _build() -> None:
    from tokn.cli import config_cmd, proxy_cmd

    app.add_typer(config_cmd.app, name="config")
    app.add_typer(proxy_cmd.app, name="proxy")
    for name in ("serve_cmd", "account_cmd", "usage_cmd", "lan_cmd"):
        try:
            module = __import__(f"tokn.cli.{name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"tokn.cli.{name}":
                raise
            continue
        module.register(app)


_build()


def main() -> None:
    app()
