"""``tokn paths``: where tokn keeps its files and where its shipped files are."""

from __future__ import annotations

import json

import typer

from tokn.cli.common import fail


def locations() -> dict[str, tuple[str, str]]:
    """name -> (path, what it is): tokn's own files, then the files it ships."""
    from tokn import data, paths
    from tokn.config import Config, ConfigError, load_config
    from tokn.logs import log_file
    from tokn.usage import default_path

    try:
        cfg = load_config()
    except ConfigError:  # a broken config still has the default places
        cfg = Config()
    return {
        "config": (str(paths.config_file()), "the config file (`tokn config edit`)"),
        "ca-dir": (str(paths.ca_dir()), "the local CA (`tokn proxy ca show`)"),
        "state-dir": (str(paths.state_dir()), "token caches and pool health (0600)"),
        "data-dir": (str(paths.data_dir()), "the usage log and other data"),
        "usage-db": (str(default_path()), "the usage log (SQLite)"),
        "log": (str(log_file(cfg)), "tokn's log file (`tokn logs`)"),
        **{name: (str(data.path(name)), what) for name, (_, what) in data.FILES.items()},
    }


def register(app: typer.Typer) -> None:
    @app.command("paths")
    def paths_cmd(
        name: str | None = typer.Argument(None, help="Print only this one (e.g. addon, "
                                          "shell-sh, ca-readme, config)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Where tokn's files are: config, CA, state, usage log, and the shell
        scripts, mitmproxy addon and CA guide it ships."""
        found = locations()
        if name is not None:
            if name not in found:
                raise fail(f"unknown name {name!r}; use one of: {', '.join(found)}.")
            typer.echo(found[name][0])
            return
        if as_json:
            typer.echo(json.dumps({k: v[0] for k, v in found.items()}, indent=2))
            return
        width = max(map(len, found))
        path_width = max(len(where) for where, _ in found.values())
        for key, (where, what) in found.items():
            typer.echo(f"{key:<{width}}  {where:<{path_width}}  # {what}")
