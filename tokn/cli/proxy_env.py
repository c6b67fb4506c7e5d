"""``tokn proxy env`` and ``tokn proxy shell``: point a shell at the proxy.

``env`` runs at every shell start (``eval "$(tokn proxy env)"``): keep this
module's imports light; the CA code is only stat'ed and read on that path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import typer
from rich.markup import escape

from tokn.cli.common import cli_errors, err_console, fail, load_config_or_exit

SHELL_HELP = "Shell syntax: sh, bash, zsh, fish or pwsh (default: from $SHELL)."
HOST_HELP = ("Proxy address \\[default: the running tokn's, else \\[proxy_mode].host, "
             "127.0.0.1].")
PORT_HELP = "Proxy port \\[default: the running tokn's, else \\[proxy_mode].port, 4142]."


def _family(shell: str) -> str:
    from tokn.shellenv import shell_family

    try:
        return shell_family(shell)
    except ValueError as exc:
        raise fail(str(exc)) from None


def _outdated_warning(cfg) -> None:
    from tokn import ca

    with cli_errors():
        missing = ca.constraints_outdated(cfg)
    if missing:
        err_console.print(
            f"[yellow]warning:[/] the tokn CA's name constraints do not cover "
            f"{', '.join(missing)}; those hosts will fail TLS until you run "
            "`tokn proxy ca regenerate` (and trust the new CA again).",
            highlight=False, soft_wrap=True,
        )


def _target(cfg, host: str | None, port: int | None) -> tuple[str, int, str | None]:
    """Where the proxy is: ``--host`` / ``--port``, else where the running tokn's
    proxy listens (its status file), else ``[proxy_mode]``; and a warning when
    nothing accepts connections there."""
    from tokn import instance
    from tokn.ports import accepts

    found = instance.running()
    running = found.address("proxy") if found is not None else None
    if host is None:
        host = running[0] if running else cfg.proxy_mode.host
    if port is None:
        port = running[1] if running else cfg.proxy_mode.port
    if accepts(host, port):
        return host, port, None
    if running:
        why = f"the running tokn's proxy is on {running[0]}:{running[1]}"
    elif found is not None:
        why = f"tokn (pid {found.pid}) is still starting, or runs without the proxy"
    else:
        why = "tokn is not running: start it with `tokn start`"
    return host, port, (f"nothing accepts connections on {host}:{port} ({why}); clients in "
                        "this shell fail until something does.")


def _warn(warning: str | None) -> None:
    if warning:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False,
                          soft_wrap=True)


def _vars(cfg, host: str, port: int) -> list[tuple[str, str]]:
    from tokn.shellenv import env_for_config

    with cli_errors():
        return env_for_config(cfg, host=host, port=port)


def register(proxy_app: typer.Typer) -> None:
    """Add ``env`` and ``shell`` to the ``tokn proxy`` group."""

    @proxy_app.command("env")
    def env_cmd(
        shell: str = typer.Option(None, "--shell", "-s", help=SHELL_HELP),
        unset: bool = typer.Option(False, "--unset", help="Print the lines that undo it."),
        host: str = typer.Option(None, "--host", help=HOST_HELP),
        port: int = typer.Option(None, "--port", help=PORT_HELP),
    ) -> None:
        """Print the shell lines that route this shell through the proxy.

        sh/bash/zsh: eval "$(tokn proxy env)" | fish: tokn proxy env --shell fish | source |
        pwsh: tokn proxy env --shell pwsh | Out-String | Invoke-Expression

        The proxy is the one the running tokn listens on (else \\[proxy_mode]); a warning
        on stderr says when nothing listens there.  Or tokn_on / tokn_off: source the
        script `tokn paths shell-sh` (shell-fish, shell-pwsh) prints.
        """
        from tokn.shellenv import guess_shell, render, render_unset

        name = shell or guess_shell()
        _family(name)
        if unset:
            sys.stdout.write(render_unset(name))
            return
        cfg = load_config_or_exit()
        host, port, warning = _target(cfg, host, port)
        pairs = _vars(cfg, host, port)
        _outdated_warning(cfg)
        _warn(warning)
        sys.stdout.write(render(name, pairs))

    @proxy_app.command("shell")
    def shell_cmd(
        shell: str = typer.Option(None, "--shell", "-s",
                                  help="Shell to run (default: $SHELL, else /bin/sh)."),
        host: str = typer.Option(None, "--host", help=HOST_HELP),
        port: int = typer.Option(None, "--port", help=PORT_HELP),
    ) -> None:
        """Start a subshell whose environment routes through the proxy; exit it to leave."""
        from tokn.shellenv import apply, proxy_url

        program = shell or os.environ.get("SHELL") or "/bin/sh"
        cfg = load_config_or_exit()
        host, port, warning = _target(cfg, host, port)
        pairs = _vars(cfg, host, port)
        _outdated_warning(cfg)
        _warn(warning)
        url = proxy_url(host, port)
        err_console.print(
            f"tokn: {os.path.basename(program)} via proxy {url} (exit to leave)",
            highlight=False, soft_wrap=True,
        )
        try:
            child = subprocess.Popen([program], env=apply(os.environ, pairs))
        except OSError as exc:
            raise fail(f"cannot start {program}: {exc.strerror or exc}") from None
        # Ctrl-C belongs to the subshell, not to us.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            code = child.wait()
        finally:
            signal.signal(signal.SIGINT, previous)
        raise typer.Exit(code if code >= 0 else 128 - code)
