"""``tokn proxy [start]``: run the MITM forward proxy (with an internal listener)."""

from __future__ import annotations

import typer

from tokn.cli.serve_cmd import route_mode_value


def register(proxy_app: typer.Typer) -> None:
    def start(host: str | None, port: int | None, route_mode: str | None,
              allow_remote: bool, api_key: str | None) -> None:
        from tokn.cli.serve_cmd import run

        # The listener the route mode hands flows to runs on a private
        # loopback port; only the proxy is public.
        run(host="127.0.0.1", port=0, api_key=api_key, with_proxy=True, proxy_host=host,
            proxy_port=port, proxy_route_mode=route_mode, allow_remote=allow_remote,
            listener_public=False, port_flags=("--port", "--port"))

    host_opt = typer.Option(None, "--host", help="Proxy address \\[default: \\[proxy_mode].host, "
                            "127.0.0.1].")
    port_opt = typer.Option(None, "--port",
                            help="Proxy port \\[default: \\[proxy_mode].port, 4142].")
    mode_opt = typer.Option(None, "--route-mode", callback=route_mode_value,
                            help="Default mode for intercepted flows: route|switch|passthrough "
                            "\\[default: \\[proxy_mode].route_mode, route].")
    remote_opt = typer.Option(False, "--insecure-allow-remote",
                              help="Allow binding beyond loopback (needs an API key; clients "
                              "then authenticate with Proxy-Authorization).")
    key_opt = typer.Option(None, "--api-key", envvar="TOKN_API_KEY",
                           help="Require this key (as the Basic proxy password).")

    @proxy_app.callback(invoke_without_command=True)
    def proxy_root(ctx: typer.Context, host: str = host_opt, port: int = port_opt,
                   route_mode: str = mode_opt, insecure_allow_remote: bool = remote_opt,
                   api_key: str = key_opt) -> None:
        """The MITM forward proxy (default 127.0.0.1:4142), its local CA and shell env.

        Without a subcommand, starts the proxy.
        """
        if ctx.invoked_subcommand is None:
            start(host, port, route_mode, insecure_allow_remote, api_key)

    @proxy_app.command("start")
    def start_cmd(host: str = host_opt, port: int = port_opt, route_mode: str = mode_opt,
                  insecure_allow_remote: bool = remote_opt, api_key: str = key_opt) -> None:
        """Start the proxy: allowlisted LLM hosts intercepted, everything else tunnelled."""
        start(host, port, route_mode, insecure_allow_remote, api_key)
