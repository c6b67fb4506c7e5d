"""``tokn lan``: share one tokn with colleagues on a trusted network.

``tokn lan url`` prints the one-liner a colleague runs (it fetches
``/-/lan/env`` with the API key, which checks the CA fingerprint and sets up
their shell) and the fingerprint to compare.
"""

from __future__ import annotations

import typer

from tokn.cli.common import cli_errors, fail, load_config_or_exit
from tokn.lan_host import guess_lan_host

app = typer.Typer(help="LAN mode: one tokn for a team (see `tokn serve --insecure-allow-remote`).",
                  no_args_is_help=True, suggest_commands=False)


def _fingerprint(cfg) -> str:
    from tokn import ca

    with cli_errors():
        files = ca.ensure_ca(cfg)
        return ca.fingerprint_sha256(files.cert_path.read_bytes())


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="lan")


@app.command("url")
def url_cmd(
    host: str = typer.Option(None, "--host", help="Address colleagues reach this machine at "
                             "\\[default: its first non-loopback address]."),
    port: int = typer.Option(None, "--port", help="Port to fetch the script from \\[default: "
                             "\\[server].port, or \\[proxy_mode].port with --via-proxy]."),
    via_proxy: bool = typer.Option(False, "--via-proxy", help="Fetch through the proxy port "
                                   "(for `tokn proxy start`, whose listener is private)."),
    shell: str = typer.Option("bash", "--shell", "-s",
                              help="Colleague's shell: sh, bash, zsh, fish or pwsh."),
    api_key: str = typer.Option(None, "--api-key", envvar="TOKN_API_KEY",
                                help="The key clients use \\[default: \\[server].api_key]."),
) -> None:
    """Print the one-line command a colleague runs to use this tokn, and the CA fingerprint."""
    from tokn import lan_env

    if shell not in lan_env.SHELLS:
        raise fail(f"unknown shell {shell!r}; use one of: {', '.join(lan_env.SHELLS)}")
    cfg = load_config_or_exit()
    key = cfg.server.api_key if api_key is None else api_key
    if port is None:
        port = cfg.proxy_mode.port if via_proxy else cfg.server.port
    raw_host = host or guess_lan_host()
    try:
        hp = lan_env.parse_host(
            f"[{raw_host.strip('[]')}]:{port}" if ":" in raw_host.strip("[]")
            else f"{raw_host}:{port}")
    except lan_env.BadHost as exc:
        raise fail(f"--host {raw_host!r}: {exc}") from None
    command = lan_env.one_liner(shell, hp.origin() + lan_env.ENV_PATH, key or None)
    fingerprint = _fingerprint(cfg)
    # Plain print: these lines are meant to be copied verbatim.
    print(command)
    print(f"# CA SHA-256 fingerprint (the script checks it and prints it): {fingerprint}")
    if not key:
        print("# note: no API key is set; tokn refuses to listen beyond loopback without one "
              "(`tokn config set server.api_key ...`).")
