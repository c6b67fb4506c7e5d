"""``tokn usage`` (reports from the usage store) and ``tokn logs`` (the log file)."""

from __future__ import annotations

import json

import typer

from tokn.cli.common import console, err_console, fail

BY_HELP = "Group by account | provider | model | day (local) | initiator | key."
TIME_HELP = ("{what}: a duration back from now (30m, 24h, 7d), a local date (2026-11-01), "
             "a date-time (2026-11-01T10:00, Z or +02:00 allowed) or epoch seconds.")


def _num(n: int | float | None) -> str:
    if n is None:
        return "-"
    return f"{n:,}" if isinstance(n, int) else f"{n:,.2f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def _local(ts: float | None) -> str:
    import datetime as dt

    if ts is None:
        return "(all)"
    return dt.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def render(report, path) -> None:  # noqa: ANN001 - a tokn.usage_query.Report
    from rich.markup import escape
    from rich.table import Table

    t = report.totals
    window = f"{_local(report.since)} → {_local(report.until) if report.until else 'now'}"
    filters = " ".join(f"{k}={v}" for k, v in report.filters.items())
    title = f"tokn usage  {window}" + (f"  ({filters})" if filters else "")
    table = Table(title=escape(title), title_justify="left", caption=escape(f"store: {path}"),
                  caption_justify="left")
    table.add_column(report.by or "", style="bold")
    # (header, value of a Totals); columns that are zero overall are left out
    columns = [("requests", lambda x: _num(x.requests)),
               ("input", lambda x: _num(x.input_tokens)),
               ("output", lambda x: _num(x.output_tokens))]
    if t.cache_read_tokens:
        columns.append(("cache read", lambda x: _num(x.cache_read_tokens)))
    if t.cache_write_tokens:
        columns.append(("cache write", lambda x: _num(x.cache_write_tokens)))
    if t.reasoning_tokens:
        columns.append(("reasoning", lambda x: _num(x.reasoning_tokens)))
    if t.premium_requests:
        columns.append(("premium", lambda x: _num(x.premium_requests)))
    columns.append(("errors", lambda x: f"{x.errors:,} ({x.error_rate:.1%})"
                    if x.errors else "0"))
    columns.append(("p50 latency", lambda x: _ms(x.median_latency_ms)))
    columns.append(("p95 latency", lambda x: _ms(x.p95_latency_ms)))
    for name, _ in columns:
        table.add_column(name, justify="right")
    for group in report.groups:
        table.add_row(escape(group.key), *[fn(group.totals) for _, fn in columns])
    if report.groups:
        table.rows[-1].end_section = True
    table.add_row("total", *[fn(t) for _, fn in columns], style="bold")
    console.print(table)
    notes = []
    if t.estimated_rows:
        notes.append(f"{t.estimated_rows:,} row(s) have estimated token counts")
    if t.credits:
        notes.append(f"credits: {t.credits:,.2f}")
    if notes:
        console.print("[dim]" + escape("; ".join(notes)) + "[/]")


def usage(since: str | None, until: str | None, account: str | None, provider: str | None,
          model: str | None, by: str | None, as_json: bool, key: str | None = None) -> None:

    from tokn import usage as store
    from tokn.cli.common import load_config_or_exit
    from tokn.shared import missing_extra, usage_reader, usage_where
    from tokn.usage_query import GROUPS, parse_since, query

    if by is not None and by not in GROUPS:
        raise fail(f"--by {by!r}: use one of {', '.join(GROUPS)}", 2)
    bounds: dict[str, float | None] = {}
    for name, value in (("since", since), ("until", until)):
        try:
            bounds[name] = parse_since(value) if value else None
        except ValueError as exc:
            raise fail(f"--{name}: {exc}", 2) from None
    start, end = bounds["since"], bounds["until"]
    cfg = load_config_or_exit()
    problem = missing_extra(cfg)
    if problem:
        raise fail(problem)
    path = usage_where(cfg)
    kwargs = dict(since=start, until=end, account=account, provider=provider, model=model,
                  by=by, key=key)
    if not cfg.usage.url and not store.default_path().is_file() and not as_json:
        err_console.print(f"No usage recorded yet (store: {path}).")
    try:
        conn = usage_reader(cfg)
    except Exception as exc:  # noqa: BLE001 - PostgreSQL unreachable: one line naming it
        raise fail(f"cannot reach the usage store {path}: {str(exc).strip()}") from None
    try:
        report = query(conn, **kwargs)
    except Exception as exc:  # noqa: BLE001 - sqlite3 or PostgreSQL: one line, no traceback
        raise fail(f"cannot read the usage store {path}: {exc}. If it was written by an "
                   "older tokn, run `tokn serve` once to migrate it.") from None
    finally:
        conn.close()
    if as_json:
        data = report.to_dict()
        data["store"] = str(path)
        typer.echo(json.dumps(data, indent=2))
        return
    render(report, path)


def logs(follow_: bool, level: str, lines: int) -> None:
    from pathlib import Path

    from tokn import instance
    from tokn.cli.common import config_or_defaults
    from tokn.logs import follow, level_number, log_file, tail, tail_for_follow

    try:
        min_level = level_number(level)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    # the file the running tokn writes (even when the config file changed or
    # broke since it started), else the config's
    found = instance.running()
    recorded = found.status.get("log_file") if found is not None else None
    path = Path(recorded) if recorded else log_file(config_or_defaults())
    if not path.exists() and not follow_:
        raise fail(f"no log file at {path} yet: it appears once tokn has started "
                   "(`tokn start`, or `tokn serve` in a terminal).")
    start = None
    if path.exists():
        shown, start = tail_for_follow(path, lines, min_level) if follow_ else \
            (tail(path, lines, min_level), None)
        for line in shown:
            typer.echo(line)
    if follow_:
        try:
            follow(path, min_level, from_end=False, start=start)
        except KeyboardInterrupt:  # Ctrl-C is how -f ends
            return


def register(app: typer.Typer) -> None:
    @app.command("usage")
    def usage_cmd(
        since: str = typer.Option(None, "--since", help=TIME_HELP.format(
            what="Start, inclusive (default: all recorded)")),
        until: str = typer.Option(None, "--until", help=TIME_HELP.format(
            what="End, exclusive (default: now)")),
        account: str = typer.Option(None, "--account", help="Only this account id."),
        provider: str = typer.Option(None, "--provider",
                                     help="Only this provider (e.g. github-copilot)."),
        model: str = typer.Option(None, "--model", help="Only this model (requested or "
                                  "served)."),
        key: str = typer.Option(None, "--key", help="Only this caller: a person's key name "
                                "(team mode), admin or anonymous."),
        by: str = typer.Option(None, "--by", help=BY_HELP),
        as_json: bool = typer.Option(False, "--json", help="Print JSON (times as epoch "
                                     "seconds and ISO-8601 UTC)."),
    ) -> None:
        """Requests, tokens, premium requests, errors and latency from the usage store.

        Reads the store file directly (read-only), so it works while tokn serve runs.
        """
        usage(since, until, account, provider, model, by, as_json, key)

    @app.command("logs")
    def logs_cmd(
        follow_: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
        level: str = typer.Option("debug", "--level", help="Minimum level: debug, info, "
                                  "warning, error."),
        lines: int = typer.Option(50, "--lines", "-n", help="How many past records to print "
                                  "first."),
    ) -> None:
        """Print (and follow) tokn's log file, filtered by level.

        The file is tokn.log in the state dir (`tokn paths`), or \\[logging].file.
        """
        logs(follow_, level, lines)
