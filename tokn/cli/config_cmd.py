"""``tokn config``: show and edit the TOML config (comments and order kept)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess

import typer
from rich.table import Table

from tokn import config, paths
from tokn.cli.common import cli_errors, console, fail

app = typer.Typer(help="Show and edit tokn's config file (TOML, mode 0600).", no_args_is_help=True)

ACCOUNT_OPT = typer.Option(None, "--account", "-a",
                           help="Edit the [[accounts]] entry with this id.")


@app.command("path")
def path_cmd() -> None:
    """Print the config file's path."""
    typer.echo(paths.config_file())


@app.command("list")
def list_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    show_defaults: bool = typer.Option(False, "--defaults", help="Include built-in defaults."),
) -> None:
    """List every key set in the file (secrets masked)."""
    with cli_errors():
        doc = config.load_document()
        cfg = config.parse_config(doc.unwrap(), str(paths.config_file()))
    data = doc.unwrap()
    if show_defaults:
        merged: dict = {}
        for name, cls in config.SECTIONS.items():
            merged[name] = {**vars(cls()), **data.get(name, {})}
        merged.update({k: v for k, v in data.items() if k not in config.SECTIONS})
        data = merged
    data = config.masked(data)
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))
        return
    table = Table("key", "value", title=str(paths.config_file()), title_justify="left")
    for key, value in config.flatten(data):
        table.add_row(key, json.dumps(value, default=str) if not isinstance(value, str) else value)
    console.print(table)
    for warning in cfg.warnings:
        console.print(f"[yellow]warning:[/] {warning}")


@app.command("get")
def get_cmd(key: str = typer.Argument(..., help="Dotted key, e.g. server.port."),
            account: str | None = ACCOUNT_OPT) -> None:
    """Print one value (the built-in default when the file does not set it)."""
    with cli_errors():
        doc = config.load_document()
        try:
            value = config.get_key(doc, key, account)
        except KeyError:
            value = None if account else config.default_for(key)
            if value is None:
                raise fail(f"{key} is not set; see `tokn config list --defaults`.") from None
    typer.echo(value if isinstance(value, str) else json.dumps(value))


@app.command("set")
def set_cmd(
    key: str = typer.Argument(..., help="Dotted key, e.g. proxy_mode.port."),
    value: str = typer.Argument(..., help="New value; parsed as the existing value's type."),
    account: str | None = ACCOUNT_OPT,
    add: bool = typer.Option(False, "--add", help="Append VALUE to an array instead of replacing."),
) -> None:
    """Set a key, keeping the existing value's type; validated before saving."""
    with cli_errors(), config.editing() as doc:
        stored = config.set_key(doc, key, value, account=account, add=add)
    where = paths.config_file()
    shown = config.mask(str(stored)) if config.is_secret_key(key) else json.dumps(stored)
    console.print(f"{key} = {shown}  [dim]({where})[/]", highlight=False)


@app.command("unset")
def unset_cmd(key: str = typer.Argument(..., help="Dotted key to remove."),
              account: str | None = ACCOUNT_OPT) -> None:
    """Remove a key (it falls back to its default)."""
    with cli_errors(), config.editing() as doc:
        try:
            config.unset_key(doc, key, account)
        except KeyError:
            raise fail(f"{key} is not set in {paths.config_file()}.") from None
    console.print(f"unset {key}")


@app.command("edit")
def edit_cmd() -> None:
    """Open the file in $VISUAL / $EDITOR (vi), then validate it."""
    path = paths.config_file()
    if not path.exists():
        with cli_errors():
            config.save_document(config.load_document(path), path)
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    try:
        code = subprocess.call([*shlex.split(editor), str(path)])
    except FileNotFoundError:
        raise fail(f"editor {editor!r} not found; set $EDITOR.") from None
    os.chmod(path, 0o600)
    if code:
        raise typer.Exit(code)
    with cli_errors():
        config.load_config(path)
    console.print(f"{path} is valid.")
