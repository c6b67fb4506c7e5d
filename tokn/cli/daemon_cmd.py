"""``tokn start | stop | restart | status | reload``: tokn in the background.

Thin: :mod:`tokn.daemon` starts, stops and signals the process,
:mod:`tokn.instance` finds it, :mod:`tokn.status_report` gathers its status;
this module parses options and prints.
"""

from __future__ import annotations

import json
import os
from typing import Any

import typer
from rich.markup import escape

from tokn.cli.common import (
    cli_errors,
    config_or_defaults,
    console,
    err_console,
    fail,
    load_config_or_exit,
)
from tokn.cli.serve_cmd import route_mode_value

NOT_RUNNING = 3  # `tokn status` exit code when nothing runs (as LSB's status)
SUPERVISED_BY = {"foreground": "in a terminal (`tokn serve`)", "start": "`tokn start`",
                 "systemd": "systemd (`tokn service`)", "launchd": "launchd (`tokn service`)"}
START_KEYS = ("host", "port", "proxy_host", "proxy_port", "proxy_route_mode",
              "insecure_allow_remote")


def _posix_only(what: str) -> None:
    if os.name == "nt":
        raise fail(f"`tokn {what}` needs Linux or macOS; run `tokn serve --with-proxy` in a "
                   "terminal of its own instead.")


def _duration(secs: float) -> str:
    secs = int(secs)
    days, rest = divmod(secs, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def _already_running(found: Any) -> str:
    where = ", ".join(u for u in (found.url("listener"), found.url("proxy")) if u)
    return (f"tokn is already running (pid {found.pid}{', ' + where if where else ''}): see "
            "`tokn status`; `tokn restart` restarts it, or run another instance with "
            "TOKN_HOME=DIR and other ports (--port, --proxy-port).")


def _service_hint(found: Any, action: str) -> str | None:
    """How to ``action`` a tokn a service manager runs (it would start it again
    or lose track of it otherwise); None when no service manager runs it."""
    kind = found.status.get("supervisor")
    unit = found.status.get("service") or "tokn"
    if kind == "systemd":
        return f"systemctl --user {action} {unit}.service"
    if kind == "launchd":
        label = f"local.{unit}"
        return {"restart": f"launchctl kickstart -k gui/{os.getuid()}/{label}",
                "stop": f"launchctl bootout gui/{os.getuid()}/{label}"}.get(action)
    return None


# --- start ------------------------------------------------------------------------------
def start(options: dict[str, Any], api_key: str | None, wait: float) -> None:
    from tokn import daemon, instance
    from tokn.logs import log_file

    _posix_only("start")
    cfg = load_config_or_exit()
    found = instance.running()
    if found is not None:
        raise fail(_already_running(found))
    log_path = log_file(cfg)
    env = daemon.child_env(os.environ, api_key)
    with cli_errors():
        try:
            found = daemon.start(daemon.serve_args(options), log_path, env, timeout=wait)
        except daemon.StartFailed as exc:
            said = [line.removeprefix("error:").strip() for line in exc.lines
                    if line.startswith("error:")]
            if said:  # its own one-line reason (a taken port, a bad option)
                for line in said[:-1]:
                    err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False)
                raise fail(said[-1]) from None
            for line in exc.lines:
                err_console.print(line, markup=False, highlight=False)
            raise fail(f"{exc}; its log: `tokn logs` ({log_path})") from None
    _started(found, str(log_path))


def _started(found: Any, log_path: str) -> None:
    console.print(f"tokn started in the background (pid {found.pid})", highlight=False)
    for label, door in (("listener", "listener"), ("proxy", "proxy")):
        if found.url(door):
            console.print(f"  {label:<9} {escape(found.url(door))}", highlight=False)
    console.print(f"  {'log':<9} {escape(log_path)}  (`tokn logs -f`)", highlight=False)
    if not found.status.get("accounts"):
        console.print("[yellow]no accounts yet:[/] add one with `tokn login` (GitHub Copilot), "
                      "`tokn login --provider NAME` or `tokn import --from gh|env|kiro`, then "
                      "`tokn restart`.", highlight=False)
    if found.url("proxy"):
        console.print("Route this shell's clients through tokn:", highlight=False)
        console.print('  eval "$(tokn proxy env)"', markup=False, highlight=False)
    console.print("`tokn status` shows it; `tokn stop` stops it.", highlight=False)


# --- stop / restart ---------------------------------------------------------------------
def stop(timeout: float | None, *, quiet_if_stopped: bool = False) -> bool:
    """Stop the running tokn; whether one was running."""
    from tokn import daemon, instance

    _posix_only("stop")
    found = instance.running()
    if found is None:
        if not quiet_if_stopped:
            console.print("tokn is not running.", highlight=False)
        return False
    if timeout is None:  # a config file broken meanwhile must not keep tokn from stopping
        timeout = config_or_defaults().server.drain_secs + 15
    err_console.print(f"stopping tokn (pid {found.pid}): requests in flight may finish "
                      f"(up to {timeout:g} s)…", highlight=False)
    if not daemon.stop(found.pid, timeout):
        raise fail(f"tokn (pid {found.pid}) did not stop within {timeout + 15:g} s; "
                   f"`kill -9 {found.pid}` ends it at once (requests in flight fail).")
    console.print(f"tokn stopped (pid {found.pid}).", highlight=False)
    hint = _service_hint(found, "stop")
    if hint and found.status.get("supervisor") == "systemd":
        console.print(f"[dim]its service starts it again at your next login; `{escape(hint)}` "
                      "or `tokn service uninstall` to keep it stopped.[/]", highlight=False)
    return True


def restart(given: dict[str, Any], api_key: str | None, wait: float,
            timeout: float | None) -> None:
    from tokn import instance

    _posix_only("restart")
    found = instance.running()
    options: dict[str, Any] = {}
    if found is not None:
        hint = _service_hint(found, "restart")
        if hint:
            raise fail(f"tokn (pid {found.pid}) runs as a service: restart it with `{hint}` "
                       "(or `tokn service uninstall` first to run it with `tokn start`).")
        recorded = found.status.get("options")
        if isinstance(recorded, dict):  # the same ports and hosts as before
            options = {k: recorded.get(k) for k in START_KEYS}
        stop(timeout)
    else:
        console.print("tokn was not running; starting it.", highlight=False)
    options.update({k: v for k, v in given.items() if v is not None and v is not False})
    start(options, api_key, wait)


# --- status -----------------------------------------------------------------------------
def status(as_json: bool) -> None:
    from tokn import status_report

    data = status_report.gather()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        _render(data)
    if not data["running"]:
        raise typer.Exit(NOT_RUNNING)


def _render(data: dict[str, Any]) -> None:
    from rich.table import Table

    home = f" (TOKN_HOME={data['home']})" if data["home"] else ""
    if not data["running"]:
        console.print(f"tokn is [bold]not running[/]{escape(home)}: start it with `tokn start`.",
                      highlight=False)
    elif not data["ready"]:
        console.print(f"tokn is starting (pid {data['pid']}){escape(home)}.", highlight=False)
    else:
        who = SUPERVISED_BY.get(data["supervisor"] or "", data["supervisor"] or "?")
        console.print(f"tokn {escape(str(data['version']))} is [bold green]running[/] (pid "
                      f"{data['pid']}, up {_duration(data['uptime_secs'] or 0)}, started by "
                      f"{escape(who)}){escape(home)}", highlight=False)
        if data["version"] != data["cli_version"]:
            console.print(f"  [yellow]this tokn is {data['cli_version']}:[/] `tokn restart` runs "
                          "the new version.", highlight=False)
    for name in ("listener", "proxy"):
        door = data[name]
        if door:
            extra = "" if door["accepting"] else "  [red](not accepting connections)[/]"
            wide = door["bind"] in ("0.0.0.0", "::", "")
            where = f"{door['url']} (all interfaces)" if wide else door["url"]
            console.print(f"  {name:<9} {escape(where)}{extra}", highlight=False)
    console.print(f"  {'log':<9} {escape(data['log_file'])}", highlight=False)
    console.print(f"  {'config':<9} {escape(data['config_file'])}", highlight=False)
    reload = data.get("reload")
    if isinstance(reload, dict) and reload.get("count"):
        console.print(f"  {'reload':<9} {escape(str(reload.get('message')))}", highlight=False)
    taken = data.get("config")
    if isinstance(taken, dict) and not taken.get("applied"):
        console.print(f"  [yellow]config file not applied:[/] "
                      f"{escape(str(taken.get('message')))}", highlight=False)
    elif isinstance(taken, dict) and taken.get("restart"):
        console.print(f"  [yellow]changed settings wait for `tokn restart`:[/] "
                      f"{escape(', '.join(taken['restart']))}", highlight=False)
    if data["accounts"]:
        table = Table("account", "provider", "health", box=None, pad_edge=False,
                      title_justify="left")
        for acc in data["accounts"]:
            style = {"ok": "green", "disabled": "dim"}.get(acc["health"], "yellow")
            table.add_row(escape(acc["id"]), escape(acc["provider"]),
                          f"[{style}]{escape(acc['text'])}[/]")
        console.print(table)
    else:
        console.print("no accounts yet: add one with `tokn login` or `tokn import`.",
                      highlight=False)
    hour = data["last_hour"]
    errors = (f"{hour['errors']:,} error{'s' * (hour['errors'] != 1)} "
              f"({hour['error_rate']:.1%})" if hour["errors"] else "no errors")
    console.print(f"last hour: {hour['requests']:,} request{'s' * (hour['requests'] != 1)}, "
                  f"{errors}, {hour['total_tokens']:,} tokens ({hour['input_tokens']:,} in, "
                  f"{hour['output_tokens']:,} out)", highlight=False)
    for problem in data["problems"]:
        err_console.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False)


# --- reload -----------------------------------------------------------------------------
def reload() -> None:
    from tokn import daemon, instance

    _posix_only("reload")
    found = instance.running()
    if found is None:
        raise fail("tokn is not running, so there is nothing to reload; start it with "
                   "`tokn start`.")
    if not found.ready:
        raise fail(f"tokn (pid {found.pid}) is still starting; try again in a moment.")
    outcome = daemon.request_reload(found)
    if outcome is None:
        raise fail(f"sent SIGHUP to tokn (pid {found.pid}), but it recorded no reload within "
                   "5 s; see `tokn logs`.")
    message = str(outcome.get("message") or "")
    if not outcome.get("applied"):
        raise fail(f"tokn (pid {found.pid}) is still running, unchanged: {message}")
    console.print(f"tokn reloaded (pid {found.pid}): {escape(message)}", highlight=False)


# --- commands ---------------------------------------------------------------------------
def register(app: typer.Typer) -> None:
    host_opt = typer.Option(None, "--host", help="Listener address \\[default: \\[server].host, "
                            "127.0.0.1].")
    port_opt = typer.Option(None, "--port", help="Listener port \\[default: \\[server].port, "
                            "4141].")
    proxy_host_opt = typer.Option(None, "--proxy-host", help="Proxy address \\[default: "
                                  "\\[proxy_mode].host, 127.0.0.1].")
    proxy_port_opt = typer.Option(None, "--proxy-port", help="Proxy port \\[default: "
                                  "\\[proxy_mode].port, 4142].")
    mode_opt = typer.Option(None, "--proxy-route-mode", callback=route_mode_value,
                            help="Proxy default mode: route|switch|passthrough.")
    remote_opt = typer.Option(False, "--insecure-allow-remote",
                              help="Allow binding beyond loopback (needs an API key).")
    key_opt = typer.Option(None, "--api-key", envvar="TOKN_API_KEY",
                           help="Require this key from clients (handed to the background "
                           "process in its environment, not on its command line).")
    wait_opt = typer.Option(60.0, "--wait", help="Seconds to wait for tokn to serve before "
                            "giving up (it is stopped then).")
    timeout_opt = typer.Option(None, "--timeout", help="Seconds requests in flight may take "
                               "to finish \\[default: \\[server].drain_secs + 15].")

    @app.command("start")
    def start_cmd(host: str = host_opt, port: int = port_opt, proxy_host: str = proxy_host_opt,
                  proxy_port: int = proxy_port_opt, proxy_route_mode: str = mode_opt,
                  insecure_allow_remote: bool = remote_opt, api_key: str = key_opt,
                  wait: float = wait_opt) -> None:
        """Run the listener and the proxy in the background (log: `tokn logs`).

        Returns once both accept connections and prints their URLs; `tokn serve`
        is the same in the foreground.
        """
        start({"host": host, "port": port, "proxy_host": proxy_host, "proxy_port": proxy_port,
               "proxy_route_mode": proxy_route_mode,
               "insecure_allow_remote": insecure_allow_remote}, api_key, wait)

    @app.command("stop")
    def stop_cmd(timeout: float = timeout_opt) -> None:
        """Stop the running tokn: no new requests, those in flight may finish."""
        stop(timeout)

    @app.command("restart")
    def restart_cmd(host: str = host_opt, port: int = port_opt,
                    proxy_host: str = proxy_host_opt, proxy_port: int = proxy_port_opt,
                    proxy_route_mode: str = mode_opt, insecure_allow_remote: bool = remote_opt,
                    api_key: str = key_opt, wait: float = wait_opt,
                    timeout: float = timeout_opt) -> None:
        """Stop the running tokn (if any) and start it in the background again.

        Without options it keeps the hosts and ports it was started with.
        """
        restart({"host": host, "port": port, "proxy_host": proxy_host,
                 "proxy_port": proxy_port, "proxy_route_mode": proxy_route_mode,
                 "insecure_allow_remote": insecure_allow_remote}, api_key, wait, timeout)

    @app.command("status")
    def status_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON (stable "
                                                "fields, see the README).")) -> None:
        """Whether tokn runs (pid, uptime, version, URLs), its accounts' health and the
        last hour's requests, errors and tokens.  Exit code 3 when it does not run."""
        status(as_json)

    @app.command("reload")
    def reload_cmd() -> None:
        """Ask the running tokn to re-read its config file (sends it SIGHUP)."""
        reload()
