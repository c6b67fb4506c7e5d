"""``tokn proxy``: the MITM forward proxy, its CA and the shell environment."""

from __future__ import annotations

import typer

app = typer.Typer(
    suggest_commands=False,  # click suggests already
    help="The MITM forward proxy (default 127.0.0.1:4142), its local CA and shell env.",
)


def _mount() -> None:
    for name, attr in (("proxy_env", "register"), ("proxy_start", "register")):
        try:
            module = __import__(f"tokn.cli.{name}", fromlist=[attr])
        except ModuleNotFoundError as exc:
            if exc.name != f"tokn.cli.{name}":
                raise
            continue
        getattr(module, attr)(app)
    try:
        from tokn.cli.ca_cmd import ca_app
    except ModuleNotFoundError as exc:
        if exc.name != "tokn.cli.ca_cmd":
            raise
    else:
        app.add_typer(ca_app, name="ca")


_mount()
