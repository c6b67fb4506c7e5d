"""``tokn proxy``: the MITM forward proxy, its CA and the shell environment."""

from __future__ import annotations

import typer

app = typer.Typer(
    suggest_commands=False,  # click suggests already
    help="The MITM forward proxy (default 127.0.0.1:4142), its local CA and shell env.",
)


def _mount() -> None:
    from tokn.cli import ca_cmd, proxy_env, proxy_start

    proxy_env.register(app)
    proxy_start.register(app)
    app.add_typer(ca_cmd.ca_app, name="ca")


_mount()
