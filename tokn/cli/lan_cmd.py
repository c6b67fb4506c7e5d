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


def _person_key(name: str, given: str | None) -> str:
    """``name``'s key, checked against its stored hash (tokn keeps no key in clear,
    so the person's key must be given: it was printed once at create/rotate)."""
    from tokn import keys

    with cli_errors():
        ring = keys.KeyRing(keys.default_path())
        if ring.by_name(name) is None:
            known = [r.name for r in keys.read(keys.default_path())]
            raise fail(f"no active key named {name!r} (keys: {', '.join(known) or 'none'}); "
                       "`tokn keys list` shows them.")
    if given is None:
        given = typer.prompt(f"{name}'s key (printed by `tokn keys create`/`rotate`)",
                             hide_input=True, err=True)
    person = ring.person(given.strip())
    if person is None or person.name != name:
        raise fail(f"that is not {name}'s current key; `tokn keys rotate {name}` makes a new "
                   "one if it is lost.")
    return given.strip()


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
    key_name: str = typer.Option(None, "--key", help="Team mode: the line for this person's "
                                 "key (`tokn keys create`); asks for the key (hidden) unless "
                                 "--api-key / TOKN_API_KEY gives it."),
) -> None:
    """Print the one-line command a colleague runs to use this tokn, and the CA fingerprint."""
    from tokn import lan_env

    if shell not in lan_env.SHELLS:
        raise fail(f"unknown shell {shell!r}; use one of: {', '.join(lan_env.SHELLS)}")
    cfg = load_config_or_exit()
    key = cfg.server.api_key if api_key is None else api_key
    if key_name is not None:
        key = _person_key(key_name, api_key)
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
