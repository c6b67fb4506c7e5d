"""``tokn config``: show and edit the TOML config (comments and order kept)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import typer
from rich.markup import escape
from rich.table import Table

from tokn import config, config_edit, config_keys, paths
from tokn.cli.common import cli_errors, console, err_console, fail, tell_running

app = typer.Typer(help="Show and edit tokn's config file (TOML, mode 0600).", no_args_is_help=True,
                  suggest_commands=False)

ACCOUNT_OPT = typer.Option(None, "--account", "-a",
                           help="Edit the \\[\\[accounts]] entry with this id.")
# Keys whose change the CA's name constraints may no longer cover.
CA_KEYS = ("proxy_mode.intercept_hosts", "proxy_mode.passthrough_hosts")


def _shown(value: object) -> str:
    """How ``get`` prints a value: strings as they are, the rest as JSON (``set`` reads both)."""
    return value if isinstance(value, str) else json.dumps(value, default=str,
                                                            ensure_ascii=False)


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
    table = Table("key", "value", title=escape(str(paths.config_file())), title_justify="left")
    if show_defaults:
        table.add_column("about", style="dim")
    for key, value in config.flatten(data):
        row = config_keys.KEYS.get(re.sub(r"\[[^]]*\]", "", key))
        about = [escape(row.doc if row else "")] if show_defaults else []
        table.add_row(escape(key), escape(_shown(value)), *about)
    console.print(table)
    for warning in cfg.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False,
                          soft_wrap=True)


@app.command("get")
def get_cmd(key: str = typer.Argument(..., help="Dotted key, e.g. server.port."),
            account: str | None = ACCOUNT_OPT) -> None:
    """Print one value (the built-in default when the file does not set it)."""
    with cli_errors():
        doc = config.load_document()
        try:
            value = config_edit.get_key(doc, key, account)
        except KeyError:
            config_edit.check_known(key, account)
            value = config_edit.default_for(key, account)
            if value is None:
                raise fail(f"{key} is not set; see `tokn config list --defaults`.") from None
    typer.echo(_shown(value))


# ignore_unknown_options: a negative number (`... -5`) is a VALUE, not an option
@app.command("set", context_settings={"ignore_unknown_options": True})
def set_cmd(
    key: str = typer.Argument(..., help="Dotted key, e.g. proxy_mode.port."),
    value: str = typer.Argument(..., help="New value; parsed as the key's type (arrays and "
                                "tables as JSON or TOML)."),
    account: str | None = ACCOUNT_OPT,
    add: bool = typer.Option(False, "--add", help="Append VALUE to an array instead of replacing."),
    force: bool = typer.Option(False, "--force", help="Set a key tokn does not know."),
) -> None:
    """Set a key, keeping its type; unknown keys and invalid values are refused."""
    with cli_errors(), config.editing() as doc:
        stored = config_edit.set_key(doc, key, value, account=account, add=add, force=force)
    where = paths.config_file()
    shown = config.mask(str(stored)) if config.is_secret_key(key) else json.dumps(stored)
    console.print(f"{escape(key)} = {escape(shown)}  [dim]({escape(str(where))})[/]",
                  highlight=False, soft_wrap=True)
    if not account and key in CA_KEYS:
        _offer_ca_regeneration()
    tell_running()


def _offer_ca_regeneration() -> None:
    """After an intercept-list change: say when the CA no longer covers it, and offer
    to make a new one (only when someone is at the terminal to answer)."""
    from tokn import ca

    with cli_errors():
        cfg = config.load_config()
        missing = ca.constraints_outdated(cfg)
    if not missing:
        return
    err_console.print(
        f"[yellow]note:[/] the tokn CA may only sign the hosts it was made for; "
        f"{escape(', '.join(missing))} need a new CA (`tokn proxy ca regenerate`), "
        "which every client that trusts the current one must trust again.",
        highlight=False, soft_wrap=True)
    if not sys.stdin.isatty():
        return
    if typer.confirm("Regenerate the CA now?", default=False, err=True):
        with cli_errors():
            files = ca.regenerate_ca(cfg)
            fingerprint = ca.fingerprint_sha256(files.cert_path.read_bytes())
        console.print(f"new CA {escape(str(files.cert_path))} (SHA-256 {fingerprint}); "
                      "restart a running tokn and re-trust it where you trusted the old one.",
                      highlight=False, soft_wrap=True)


@app.command("unset")
def unset_cmd(key: str = typer.Argument(..., help="Dotted key to remove."),
              account: str | None = ACCOUNT_OPT) -> None:
    """Remove a key (it falls back to its default)."""
    with cli_errors(), config.editing() as doc:
        try:
            config_edit.unset_key(doc, key, account)
        except KeyError:
            raise fail(f"{key} is not set in {paths.config_file()}.") from None
    console.print(f"unset {escape(key)}", highlight=False)
    tell_running()


def _editor() -> list[str]:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    return shlex.split(editor)


@app.command("edit")
def edit_cmd() -> None:
    """Open the file in $VISUAL / $EDITOR (vi); an invalid result is not saved.

    You edit a copy: when it is valid it replaces the file; when not, you can
    reopen it, or leave with the file unchanged (your edit kept beside it).
    """
    path = paths.config_file()
    with cli_errors():
        original = _read_text(path)
    draft = path.with_name(f".{path.name}.edit.toml")
    paths.write_private(draft, original)
    try:
        while True:
            try:
                code = subprocess.call([*_editor(), str(draft)])
            except FileNotFoundError:
                raise fail(f"editor {_editor()[0]!r} not found; set $EDITOR.") from None
            if code:
                raise fail(f"the editor exited with status {code}; {path} is unchanged.", code)
            text = draft.read_text(encoding="utf-8")
            try:
                config.save_text(text, path)
            except config.ConfigError as exc:
                err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False,
                                  soft_wrap=True)
                if _ask("Reopen the editor to fix it?"):
                    continue
                kept = path.with_name(f"{path.name}.rejected")
                paths.write_private(kept, text)
                raise fail(f"{path} is unchanged; your edit is in {kept}.") from None
            break
    finally:
        draft.unlink(missing_ok=True)
    console.print(f"{escape(str(path))} is valid" + (" and saved." if text != original
                                                    else " (unchanged)."), highlight=False)
    if text != original:
        tell_running()


def _ask(question: str) -> bool:
    """A yes/no question; no when nobody can answer (end of input)."""
    try:
        return typer.confirm(question, default=True, err=True)
    except typer.Abort:
        return False


def _read_text(path) -> str:
    """The file's text (an empty document when there is none); errors as ConfigError."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise config.ConfigError(f"cannot read {path}: {exc.strerror}") from exc
