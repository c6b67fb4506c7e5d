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


def config_or_defaults():
    """The config, or the defaults with a warning when the file does not load:
    for commands that must work while it is broken (`tokn stop`, `tokn logs`)."""
    from tokn.config import Config, ConfigError, load_config

    try:
        cfg = load_config()
    except ConfigError as exc:
        print(f"warning: {exc} (going on with the defaults)", file=sys.stderr)
        return Config()
    for warning in cfg.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return cfg


PICKUP_SECS = 3.0  # how long a command waits for the running tokn to take up its change


def tell_running(timeout: float = PICKUP_SECS) -> None:
    """The last line of a command that changed the config file: whether the
    running tokn of this home took the change up, what waits for a restart, or
    why it kept its config.  Nothing when no tokn runs from this config file."""
    from pathlib import Path

    from rich.markup import escape

    from tokn import instance, paths
    from tokn.reload import digest

    found = instance.running()
    path = paths.config_file().resolve()
    serving = found.status.get("config_file") if found is not None else None
    if found is None or not found.ready or not serving or Path(serving).resolve() != path:
        return
    try:
        wanted = digest(path.read_bytes())
    except OSError:
        return
    done = instance.config_taken_up(found.pid, wanted, timeout)
    who = f"the running tokn (pid {found.pid})"
    if done is None:
        err_console.print(f"[yellow]note:[/] {who} has not taken up the change within "
                          f"{timeout:g} s; `tokn reload` applies it now (see `tokn logs`).",
                          highlight=False)
    elif not done.get("applied"):
        err_console.print(f"[yellow]note:[/] {who} did not take up the change: "
                          f"{escape(str(done.get('message')))}", highlight=False)
    elif done.get("restart"):
        keys = ", ".join(str(k) for k in done["restart"])
        console.print(f"{who} applied it, except {escape(keys)}: `tokn restart` applies "
                      "those.", highlight=False)
    else:
        console.print(f"{who} applied it.", highlight=False)
