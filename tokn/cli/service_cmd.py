"""``tokn service install | uninstall | status``: tokn as a user service.

Thin: :mod:`tokn.service` renders the systemd unit / launchd agent and talks
to the service manager; this module parses options and prints.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer
from rich.markup import escape

from tokn.cli.common import console, err_console, fail, load_config_or_exit

app = typer.Typer(
    suggest_commands=False,  # click suggests already
    no_args_is_help=True,
    help="Run tokn as a user service (a systemd user unit on Linux, a launchd agent on "
    "macOS): started at login, started again when it fails.",
)

KIND_HELP = "systemd or launchd \\[default: launchd on macOS, else systemd]."
NAME_HELP = ("Service name \\[default: tokn; with TOKN_HOME set, tokn-DIR-HASH, one per "
             "home].")
DIR_HELP = ("Directory for the unit file \\[default: ~/.config/systemd/user, "
            "~/Library/LaunchAgents].")
NOT_INSTALLED = 3


def _service(kind: str | None, name: str | None, unit_dir: Path | None):  # noqa: ANN202
    from tokn import service

    kind = kind or service.default_kind()
    if kind not in service.KINDS:
        raise fail(f"--kind {kind!r}: use one of {', '.join(service.KINDS)}.", 2)
    try:
        name = service.check_name(name or service.default_name())
    except ValueError as exc:
        raise fail(f"--name: {exc}.", 2) from None
    return service.Service(kind, name, (unit_dir or service.default_dir(kind)).expanduser())


def _render(svc) -> bytes:  # noqa: ANN001 - a tokn.service.Service
    from tokn.logs import log_file

    cfg = load_config_or_exit()
    return svc.render(log_file=log_file(cfg), stop_secs=cfg.server.drain_secs + 15)


def _commands(svc, verb: str) -> str:  # noqa: ANN001
    """The manager commands a person would run to ``verb`` ("enable"/"disable")."""
    from tokn import service

    if svc.kind == "systemd":
        if verb == "enable":
            return f"systemctl --user daemon-reload && systemctl --user enable --now {svc.unit}"
        return f"systemctl --user disable --now {svc.unit}"
    if verb == "enable":
        return f"launchctl bootstrap gui/$(id -u) {svc.path}"
    return f"launchctl bootout gui/$(id -u)/{service.label(svc.name)}"


def _wait_running(kind: str, secs: float = 30.0):  # noqa: ANN202
    from tokn import instance

    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        found = instance.running()
        if found is not None and found.ready and found.status.get("supervisor") == kind:
            return found
        time.sleep(0.2)
    return None


kind_opt = typer.Option(None, "--kind", help=KIND_HELP)
name_opt = typer.Option(None, "--name", help=NAME_HELP)
dir_opt = typer.Option(None, "--unit-dir", help=DIR_HELP)


@app.command("install")
def install_cmd(
    kind: str = kind_opt, name: str = name_opt, unit_dir: Path = dir_opt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the unit file; write and "
                                 "start nothing."),
    no_enable: bool = typer.Option(False, "--no-enable", help="Write the unit file only; do "
                                   "not ask systemctl / launchctl to start it."),
) -> None:
    """Write a service that runs `tokn serve --with-proxy` at login (this tokn, this
    TOKN_HOME), restarts it when it fails, and start it."""
    from tokn import instance, paths, service

    svc = _service(kind, name, unit_dir)
    content = _render(svc)
    if dry_run:
        err_console.print(f"# would write {escape(str(svc.path))}", highlight=False)
        sys.stdout.write(content.decode())
        return
    found = instance.running()
    if not no_enable and found is not None and found.status.get("supervisor") != svc.kind:
        raise fail(f"tokn is running already (pid {found.pid}); stop it first with `tokn "
                   "stop` so the service can take its ports, or pass --no-enable.")
    paths.write_private(svc.path, content, mode=0o644)  # no secret inside: paths only
    console.print(f"wrote {escape(str(svc.path))}", highlight=False)
    if no_enable:
        console.print(f"start it with: {escape(_commands(svc, 'enable'))}", highlight=False)
        return
    try:
        service.enable(svc)
    except service.ManagerError as exc:
        raise fail(f"{exc}. The unit is written; once that is fixed: "
                   f"{_commands(svc, 'enable')}") from None
    running = _wait_running(svc.kind)
    if running is None:
        raise fail(f"the service {svc.name} was started but tokn did not come up within 30 s; "
                   "see `tokn service status` and `tokn logs`.")
    urls = ", ".join(u for u in (running.url("listener"), running.url("proxy")) if u)
    console.print(f"tokn runs as the {svc.kind} service {svc.name} (pid {running.pid}): "
                  f"{escape(urls)}", highlight=False)
    if svc.kind == "systemd":
        console.print("[dim]it starts at login; to keep it running after you log out: "
                      "`loginctl enable-linger $USER`[/]", highlight=False)


@app.command("uninstall")
def uninstall_cmd(
    kind: str = kind_opt, name: str = name_opt, unit_dir: Path = dir_opt,
    no_disable: bool = typer.Option(False, "--no-disable", help="Remove the unit file only; "
                                    "do not ask systemctl / launchctl to stop it."),
) -> None:
    """Stop the service and remove its unit file."""
    from tokn import service

    svc = _service(kind, name, unit_dir)
    if not svc.path.exists():
        console.print(f"no tokn service at {escape(str(svc.path))}; nothing to remove.",
                      highlight=False)
        return
    if not no_disable:
        try:
            service.disable(svc)
        except service.ManagerError as exc:
            raise fail(f"{exc}. Nothing was removed; stop it with "
                       f"`{_commands(svc, 'disable')}`, or pass --no-disable.") from None
    svc.path.unlink()
    if not no_disable:
        try:
            service.reload_manager(svc)
        except service.ManagerError as exc:
            err_console.print(f"[yellow]warning:[/] {escape(str(exc))}", highlight=False)
    console.print(f"removed {escape(str(svc.path))}", highlight=False)


@app.command("status")
def status_cmd(kind: str = kind_opt, name: str = name_opt, unit_dir: Path = dir_opt) -> None:
    """Whether the service is installed, current and running (exit code 3: not installed)."""
    from tokn import instance, service

    svc = _service(kind, name, unit_dir)
    what = "systemd user unit" if svc.kind == "systemd" else "launchd agent"
    if not svc.path.exists():
        console.print(f"{what} {svc.name}: not installed (`tokn service install` writes "
                      f"{escape(str(svc.path))}).", highlight=False)
        raise typer.Exit(NOT_INSTALLED)
    console.print(f"{what} {svc.name}: {escape(str(svc.path))}", highlight=False)
    if svc.path.read_bytes() != _render(svc):
        console.print("  [yellow]out of date[/] (another tokn, Python or setting wrote it): "
                      "`tokn service install` rewrites it.", highlight=False)
    console.print(f"  service manager: {escape(service.state(svc))}", highlight=False)
    found = instance.running()
    if found is None:
        console.print("  tokn: not running", highlight=False)
    else:
        who = found.status.get("supervisor") or "starting"
        console.print(f"  tokn: running (pid {found.pid}, started by {escape(who)})",
                      highlight=False)
