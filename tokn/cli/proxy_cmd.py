"""``tokn proxy``: the MITM forward proxy, its CA and the shell environment."""

from __future__ import annotations

import typer

from tokn.cli import proxy_env, proxy_start
from tokn.cli.ca_cmd import ca_app

app = typer.Typer(
    suggest_commands=False,  # click suggests already
    help="The MITM forward proxy (default 127.0.0.1:4142), its local CA and shell env.",
)

proxy_env.register(app)
proxy_start.register(app)
app.add_typer(ca_app, name="ca")
