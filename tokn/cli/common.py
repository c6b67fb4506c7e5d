"""Shared helpers for command modules: one error boundary, one console."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import typer
from rich.console import Console

# emoji=False: ":AB:" in a fingerprint must not become an emoji.  soft_wrap: no
# hard line breaks in what we print (paths and URLs must stay pasteable); tables
# still fit the terminal.
console = Console(emoji=False, soft_wrap=True)
err_console = Console(stderr=True, emoji=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` (plain text: ``[server]`` stays) on stderr and return
    an Exit to raise."""
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Turn tokn's domain errors into a one-line CLI message (no traceback)."""
    from tokn.config import ConfigError
    from tokn.errors import ToknError

    try:
        yield
    except (ConfigError, ToknError) as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(130) from None


def load_config_or_exit():
    """Load the config, print its warnings to stderr, exit with a message on error."""
    from tokn.config import load_config

    with cli_errors():
        cfg = load_config()
    for warning in cfg.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return cfg
