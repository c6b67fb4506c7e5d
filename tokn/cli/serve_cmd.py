"""``tokn serve``: the OpenAI/Anthropic-compatible listener (and the proxy)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import typer
from rich.markup import escape

from tokn import __version__
from tokn.cli.common import cli_errors, console, err_console, fail, load_config_or_exit


def route_mode_value(value: str | None) -> str | None:
    from tokn.config import ROUTE_MODES

    if value is not None and value not in ROUTE_MODES:
        raise typer.BadParameter(f"{value!r}; use one of: {', '.join(ROUTE_MODES)}")
    return value


WILDCARDS = ("0.0.0.0", "::", "")


def _where(url: str, host: str) -> str:
    """Where a server listens, for people: a wildcard address is every interface,
    not just the loopback URL that reaches it from here."""
    if host not in WILDCARDS:
        return f"[bold]{escape(url)}[/]"
    port = urlsplit(url).port
    shown = f"[{host}]" if ":" in host else host
    return (f"[bold]http://{escape(shown)}:{port}[/] (all interfaces; from this machine "
            f"{escape(url)})")


def _port_in_use(exc, flag: str) -> str:  # noqa: ANN001 - a tokn.ports.PortInUse
    """One line for a taken port, naming the fix."""
    from tokn import instance

    running = instance.running()
    ours = running is not None and any(
        (where or (None, None))[1] == exc.port
        for where in (running.address("listener"), running.address("proxy")))
    if ours:
        return (f"{exc}: tokn is already running there (pid {running.pid}): see `tokn "
                f"status`; stop it with `tokn stop`, or choose another port with {flag}.")
    return (f"{exc} (by another program, or a tokn of another TOKN_HOME; `tokn status` "
            f"shows this one's): choose another port with {flag}.")


def _already_running(pid: int) -> str:
    return (f"tokn is already running from this TOKN_HOME (pid {pid}): see `tokn status`; "
            "`tokn restart` restarts it, `tokn stop` stops it.")


def run(*, host: str | None, port: int | None, api_key: str | None, with_proxy: bool,
        proxy_host: str | None, proxy_port: int | None, proxy_route_mode: str | None,
        allow_remote: bool, listener_public: bool = True,
        port_flags: tuple[str, str] = ("--port", "--proxy-port")) -> None:
    """Shared by ``tokn serve`` and ``tokn proxy start`` (and so by ``tokn start``
    and the service units, which run ``tokn serve``).  ``port_flags``: the
    options that set the listener's and the proxy's port, for messages."""
    import asyncio
    import logging
    import time

    from tokn import instance
    from tokn.logs import setup_logging, stderr_is_log
    from tokn.ports import PortInUse
    from tokn.runtime import Bound, Runtime, serve
    from tokn.server.guard import check_bind

    options = {"host": host, "port": port, "proxy_host": proxy_host, "proxy_port": proxy_port,
               "proxy_route_mode": proxy_route_mode, "insecure_allow_remote": allow_remote,
               "with_proxy": with_proxy, "listener_public": listener_public}
    cfg = load_config_or_exit()
    host = host or cfg.server.host
    port = cfg.server.port if port is None else port
    key = cfg.server.api_key if api_key is None else api_key
    p_host = proxy_host or cfg.proxy_mode.host
    p_port = cfg.proxy_mode.port if proxy_port is None else proxy_port
    try:
        if listener_public:
            check_bind(host, allow_remote=allow_remote, api_key=key, what="the listener")
        if with_proxy:
            check_bind(p_host, allow_remote=allow_remote, api_key=key, what="the proxy")
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    # the home's instance (pid file, status file) unless another tokn is; only a
    # tokn in a terminal may run beside it (on other ports)
    lock = instance.acquire()
    if lock is None and instance.supervisor() != "foreground":
        raise fail(_already_running(instance.holder() or 0))
    quiet = stderr_is_log(cfg)  # started in the background: the log is the only output
    log_path = setup_logging(cfg)
    log = logging.getLogger("tokn")
    started_at = time.time()

    def say(lines: list[str]) -> None:
        for line in lines:
            if quiet:
                log.info("%s", line)
            else:
                console.print(line, markup=False, highlight=False, soft_wrap=True)

    def ready(bound: Bound) -> None:
        count = len(runtime.pool.providers)
        log.info("started tokn %s (pid %d%s): listener %s, proxy %s, %d account(s)",
                 __version__, os.getpid(), "" if lock else ", beside the running instance",
                 bound.api_url or "private", bound.proxy_url or "off", count)
        if lock is not None:
            instance.write_status(instance.status_record(
                listener=(bound.api_url, host), proxy=(bound.proxy_url, p_host), accounts=count,
                options=options, log_file=str(log_path), started_at=started_at))
        if not quiet:
            if bound.api_url:
                console.print(f"tokn listener on {_where(bound.api_url, host)} "
                              f"({count} account{'s' * (count != 1)})", highlight=False,
                              soft_wrap=True)
            if bound.proxy_url:
                console.print(f"tokn proxy on {_where(bound.proxy_url, p_host)} — in a shell: "
                              f'eval "$(tokn proxy env)"', highlight=False, soft_wrap=True)
            if not count:
                console.print("[yellow]no accounts yet:[/] add one with `tokn login` (GitHub "
                              "Copilot), `tokn login --provider NAME` (an API key) or `tokn "
                              "import --from gh|copilot-plugin|env|kiro`; the running tokn "
                              "takes it up.",
                              highlight=False, soft_wrap=True)
        from tokn.server.lan import startup_lines

        say(startup_lines(runtime, bound, host if listener_public else "127.0.0.1",
                          p_host if with_proxy else None))
        if not quiet:
            console.print(f"[dim]log: {escape(str(log_path))} · Ctrl-C to stop[/]",
                          highlight=False, soft_wrap=True)

    def reloaded(outcome, source: str) -> None:  # noqa: ANN001 - a tokn.reload.Outcome
        """Record the config taken up (or refused) in the status file, where
        `tokn reload` and the commands that change the config look for it."""
        if lock is None:
            return
        status = instance.read_status()
        done = status.get("config") if isinstance(status.get("config"), dict) else {}
        status["config"] = instance.config_record(
            generation=int(done.get("generation") or 0) + 1, digest=outcome.digest,
            applied=outcome.applied, message=outcome.message, restart=list(outcome.restart),
            at=outcome.at)
        if source == "SIGHUP":
            done = status.get("reload") if isinstance(status.get("reload"), dict) else {}
            status["reload"] = {"count": int(done.get("count") or 0) + 1, "at": outcome.at,
                                "applied": outcome.applied, "message": outcome.message}
        instance.write_status(status)

    async def main() -> None:
        await serve(runtime, host=host, port=port, with_proxy=with_proxy,
                    proxy_host=p_host, proxy_port=p_port, proxy_route_mode=proxy_route_mode,
                    listener_public=listener_public, on_ready=ready, on_reload=reloaded)

    try:
        with cli_errors():
            runtime = Runtime(cfg, api_key=key)
            try:
                asyncio.run(main())
            except PortInUse as exc:
                flag = port_flags[0] if exc.what == "the listener" else port_flags[1]
                raise fail(_port_in_use(exc, flag)) from None
    finally:
        if lock is not None:
            lock.release()
    if quiet:
        log.info("stopped (pid %d)", os.getpid())
    else:
        err_console.print("tokn stopped")


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        host: str = typer.Option(None, help="Listener address \\[default: \\[server].host, "
                                 "127.0.0.1]."),
        port: int = typer.Option(None, help="Listener port \\[default: \\[server].port, 4141]."),
        api_key: str = typer.Option(None, "--api-key", envvar="TOKN_API_KEY",
                                    help="Require this key from clients (Bearer or x-api-key)."),
        with_proxy: bool = typer.Option(False, "--with-proxy",
                                        help="Also run the MITM proxy in the same process."),
        proxy_host: str = typer.Option(None, help="Proxy address \\[default: "
                                       "\\[proxy_mode].host, 127.0.0.1]."),
        proxy_port: int = typer.Option(None, help="Proxy port \\[default: \\[proxy_mode].port, "
                                       "4142]."),
        proxy_route_mode: str = typer.Option(None, callback=route_mode_value,
                                             help="Proxy default mode: route|switch|passthrough."),
        insecure_allow_remote: bool = typer.Option(
            False, "--insecure-allow-remote",
            help="Allow binding beyond loopback (needs an API key)."),
    ) -> None:
        """Run the OpenAI/Anthropic-compatible API on 127.0.0.1:4141 (and the proxy)."""
        run(host=host, port=port, api_key=api_key, with_proxy=with_proxy,
            proxy_host=proxy_host, proxy_port=proxy_port, proxy_route_mode=proxy_route_mode,
            allow_remote=insecure_allow_remote)
