"""``tokn serve``: the OpenAI/Anthropic-compatible listener (and the proxy)."""

from __future__ import annotations

from urllib.parse import urlsplit

import typer
from rich.markup import escape

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


def run(*, host: str | None, port: int | None, api_key: str | None, with_proxy: bool,
        proxy_host: str | None, proxy_port: int | None, proxy_route_mode: str | None,
        allow_remote: bool, listener_public: bool = True) -> None:
    """Shared by ``tokn serve`` and ``tokn proxy start``."""
    import asyncio

    from tokn.logs import setup_logging
    from tokn.runtime import Bound, Runtime, serve
    from tokn.server.guard import check_bind

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
    setup_logging(cfg)

    def ready(bound: Bound) -> None:
        count = len(runtime.pool.providers)
        if bound.api_url:
            console.print(f"tokn listener on {_where(bound.api_url, host)} "
                          f"({count} account{'s' * (count != 1)})", highlight=False,
                          soft_wrap=True)
        if bound.proxy_url:
            console.print(f"tokn proxy on {_where(bound.proxy_url, p_host)} — in a shell: "
                          f'eval "$(tokn proxy env)"', highlight=False, soft_wrap=True)
        if not count:
            console.print("[yellow]no accounts yet:[/] add one with `tokn login` (GitHub "
                          "Copilot), `tokn login --provider NAME` (an API key) or `tokn import "
                          "--from gh|copilot-plugin|env|kiro`, then restart tokn.",
                          highlight=False, soft_wrap=True)
        from tokn.server.lan import startup_lines

        for line in startup_lines(runtime, bound, host if listener_public else "127.0.0.1",
                                  p_host if with_proxy else None):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        console.print("[dim]Ctrl-C to stop[/]")

    async def main() -> None:
        await serve(runtime, host=host, port=port, with_proxy=with_proxy,
                    proxy_host=p_host, proxy_port=p_port, proxy_route_mode=proxy_route_mode,
                    listener_public=listener_public, on_ready=ready)

    with cli_errors():
        runtime = Runtime(cfg, api_key=key)
        asyncio.run(main())
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
