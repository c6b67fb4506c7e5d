"""``tokn keys``: team mode, a key per person (create, list, revoke, rotate).

Keys are stored hashed in ``keys.json`` beside the config (0600); the running
tokn notices every change within a fraction of a second, so nothing needs a
restart.  A new key is printed once, with that person's LAN bootstrap line.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from typing import Any

import typer

from tokn.cli.common import cli_errors, console, err_console, fail, load_config_or_exit

app = typer.Typer(help="Team mode: a key per person, with limits (see README, Team mode).",
                  no_args_is_help=True, suggest_commands=False)

_AHEAD = re.compile(r"^(\d+)\s*(h|d|w)$", re.IGNORECASE)
_AHEAD_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400}


def parse_expiry(value: str, now: float | None = None) -> float:
    """``--expires``: a local date (the key works until 00:00 that day), a
    local date-time (Z / +02:00 allowed) or a duration ahead (12h, 30d, 2w)."""
    now = time.time() if now is None else now
    text = value.strip()
    match = _AHEAD.match(text)
    if match:
        return now + int(match.group(1)) * _AHEAD_UNITS[match.group(2).lower()]
    try:
        when = dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(f"cannot read {value!r}: use a date (2026-12-31), a date-time "
                         "(2026-12-31T18:00) or a duration ahead (12h, 30d, 2w)") from None
    if when <= now:
        raise ValueError(f"{value!r} is in the past")
    return when


def _globs(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    globs = tuple(g.strip() for g in value.split(",") if g.strip())
    for glob in globs:
        if not re.fullmatch(r"[A-Za-z0-9._:/*?\[\]!-]+", glob):
            raise ValueError(f"model glob {glob!r}: use model names with * ? [..] wildcards")
    return globs


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise fail(f"{name} must be at least 1 (leave it out for no limit)", 2)


def _show_key(name: str, key: str, what: str) -> None:
    from tokn import lan_env
    from tokn.lan_host import guess_lan_host

    cfg = load_config_or_exit()
    print(key)
    err_console.print(f"{what} for {name!r}. It is shown this once: tokn keeps only its hash.",
                      highlight=False)
    hp = lan_env.HostPort(guess_lan_host(), cfg.server.port)
    err_console.print("Their setup line (on the LAN; `tokn lan url --key NAME` prints it "
                      "again):", highlight=False)
    err_console.print(lan_env.one_liner("bash", hp.origin() + lan_env.ENV_PATH, key),
                      markup=False, highlight=False)
    if not cfg.server.api_key:
        err_console.print("note: [server].api_key (the admin key) is not set, so tokn admits "
                          "anyone on loopback and refuses to listen beyond it; people's keys "
                          "restrict callers once it is set.", markup=False, highlight=False)


@app.command("create")
def create_cmd(
    name: str = typer.Argument(..., help="Whose key: lowercase letters, digits, dots, "
                               "dashes, underscores."),
    rpm: int = typer.Option(None, "--rpm", help="Requests per minute \\[default: no limit]."),
    tokens_per_day: int = typer.Option(None, "--tokens-per-day",
                                       help="Tokens per (local) day \\[default: no limit]."),
    models: str = typer.Option(None, "--models", help="Models it may use, comma-separated "
                               "globs (claude-*,gpt-4.1) \\[default: all]."),
    expires: str = typer.Option(None, "--expires", help="When it stops working: a date "
                                "(at 00:00), a date-time or a duration ahead (30d)."),
) -> None:
    """Create a key for a person and print it (once; only its hash is kept)."""
    from tokn import keys

    _positive("--rpm", rpm)
    _positive("--tokens-per-day", tokens_per_day)
    try:
        globs = _globs(models)
        until = parse_expiry(expires) if expires else None
    except ValueError as exc:
        raise fail(f"{'--models' if 'glob' in str(exc) else '--expires'}: {exc}", 2) from None
    with cli_errors():
        key = keys.create(name, rpm=rpm, tokens_per_day=tokens_per_day, models=globs,
                          expires=until)
    _show_key(name, key, "New key")


@app.command("rotate")
def rotate_cmd(name: str = typer.Argument(..., help="The key's name.")) -> None:
    """Give a person a new key (limits kept); the old one stops working at once."""
    from tokn import keys

    with cli_errors():
        key = keys.rotate(name)
    _show_key(name, key, "New key (the old one no longer works)")


@app.command("revoke")
def revoke_cmd(name: str = typer.Argument(..., help="The key's name.")) -> None:
    """End a person's key; the running tokn refuses it within a second."""
    from tokn import keys

    with cli_errors():
        keys.revoke(name)
    console.print(f"Revoked {name!r}: requests with it are refused from now on "
                  "(`tokn keys rotate` gives the name a new key).", highlight=False)


def _stamp(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def key_rows() -> list[dict[str, Any]]:
    """Every key with its limits and use (from the usage store: last use, today)."""
    from tokn import keys
    from tokn import usage as store
    from tokn.usage_query import last_used_by_key, query, stamp

    now = time.time()
    with cli_errors():
        records = keys.read(keys.default_path())
    try:
        conn = store.connect_readonly(store.default_path())
    except FileNotFoundError:
        conn = store.empty_connection()
    start = dt.datetime.fromtimestamp(now).astimezone().replace(
        hour=0, minute=0, second=0, microsecond=0).timestamp()
    try:
        last = last_used_by_key(conn)
        today = {g.key: g.totals for g in query(conn, since=start, by="key").groups}
    except Exception:  # noqa: BLE001 - an old store without key names: no use shown
        last, today = {}, {}
    finally:
        conn.close()
    rows = []
    for rec in records:
        totals = today.get(rec.name)
        rows.append({
            "name": rec.name, "state": rec.state(now), "created": stamp(rec.created),
            "last_used": stamp(last.get(rec.name)), "rpm": rec.rpm,
            "tokens_per_day": rec.tokens_per_day, "models": list(rec.models),
            "expires": stamp(rec.expires), "revoked": stamp(rec.revoked),
            "requests_today": totals.requests if totals else 0,
            "tokens_today": totals.total_tokens if totals else 0,
        })
    return rows


@app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every key: state, created, last used, limits, use today (never the key)."""
    from rich.markup import escape
    from rich.table import Table

    rows = key_rows()
    if as_json:
        typer.echo(json.dumps({"keys": rows}, indent=2))
        return
    if not rows:
        console.print("No keys yet: `tokn keys create NAME` makes one.")
        return
    table = Table(title="tokn keys", title_justify="left")
    for column in ("name", "state", "created", "last used", "rpm", "tokens/day", "models",
                   "expires", "today"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            escape(row["name"]), row["state"],
            _stamp(row["created"]["epoch_s"]),
            _stamp(row["last_used"]["epoch_s"]) if row["last_used"] else "never",
            str(row["rpm"] or "-"),
            f"{row['tokens_per_day']:,}" if row["tokens_per_day"] else "-",
            escape(",".join(row["models"]) or "all"),
            _stamp(row["expires"]["epoch_s"]) if row["expires"] else "-",
            f"{row['requests_today']:,} req, {row['tokens_today']:,} tok")
    console.print(table)
