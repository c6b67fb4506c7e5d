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
    suggest_commands=False,  # click (>= 8.4) suggests already; typer would say it twice
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


# top-level command -> module providing it.  Only the module a command line
# needs is imported (``tokn proxy env`` runs at every shell start).
COMMANDS: dict[str, str] = {
    "config": "config_cmd",
    "proxy": "proxy_cmd",
    "serve": "serve_cmd",
    "start": "daemon_cmd",
    "stop": "daemon_cmd",
    "restart": "daemon_cmd",
    "status": "daemon_cmd",
    "reload": "daemon_cmd",
    "login": "login_cmd",
    "import": "login_cmd",
    "account": "account_cmd",
    "models": "models_cmd",
    "headers": "account_cmd",
    "usage": "usage_cmd",
    "logs": "usage_cmd",
    "lan": "lan_cmd",
    "keys": "keys_cmd",
    "paths": "paths_cmd",
    "service": "service_cmd",
}
GROUPS = {"config_cmd": "config", "proxy_cmd": "proxy", "service_cmd": "service",
          "keys_cmd": "keys"}


def _wanted(argv: list[str]) -> list[str]:
    first = next((a for a in argv if not a.startswith("-")), None)
    if first in COMMANDS:
        return [COMMANDS[first]]
    return list(dict.fromkeys(COMMANDS.values()))


def _build(argv: list[str] | None = None) -> None:
    import importlib
    import sys

    for name in _wanted(sys.argv[1:] if argv is None else argv):
        module = importlib.import_module(f"tokn.cli.{name}")
        if name in GROUPS:
            app.add_typer(module.app, name=GROUPS[name])
        else:
            module.register(app)


_build()


def main() -> None:
    app()
