"""Every command's ``--help`` shows its help text whole: rich markup must not eat
``[...]`` (``[default: [server].host]`` became ``[default: .host]``), and
every argument's help is there."""

from __future__ import annotations

import inspect
import re

import click
import pytest
import typer.main
from typer.testing import CliRunner

from tokn.cli import app

runner = CliRunner()
BOX = re.compile(r"[│╭╮╰╯─┃━┏┓┗┛]")


def _commands(cmd: click.Command, path: tuple[str, ...] = ()):
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def _flat(text: str) -> str:
    return " ".join(BOX.sub(" ", text).split())


def _expected(text: str) -> str:
    """What the author meant to show: ``\\[`` is rich's escape for ``[``."""
    return " ".join(inspect.cleandoc(text).replace("\\[", "[").split())


def test_every_command_is_covered():
    names = {" ".join(path) for path, _ in COMMANDS}
    for name in ("serve", "config set", "lan url", "proxy env", "proxy ca show", "login",
                 "import", "account show", "usage", "logs", "paths"):
        assert name in names


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) or "tokn" for p, _ in COMMANDS])
def test_help_text_renders_whole(path, cmd):
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "100", "TERMINAL_WIDTH": "100"})
    assert result.exit_code == 0, result.output
    shown = _flat(result.output)
    texts = [cmd.help or ""] + [p.help for p in cmd.params if getattr(p, "help", None)]
    for text in texts:
        for paragraph in text.split("\n\n"):
            want = _expected(paragraph)
            assert want in shown, (want, result.output)
    assert " ." not in shown.replace(" ...", "").replace(" .venv", "")
    assert "[]" not in shown
    for param in cmd.params:
        if isinstance(param, click.Argument):
            assert getattr(param, "help", None), f"{path} {param.name} has no help"


GROUPS = [(path, cmd) for path, cmd in COMMANDS if isinstance(cmd, click.Group) and cmd.commands]


@pytest.mark.parametrize("path,group", GROUPS, ids=[" ".join(p) or "tokn" for p, _ in GROUPS])
def test_a_mistyped_command_is_suggested_once(path, group):
    name = sorted(group.commands)[0]
    result = runner.invoke(app, [*path, name[:-1] + name[-1] * 2])   # "list" -> "listt"
    assert result.exit_code == 2
    assert result.output.count("Did you mean") == 1, result.output
    assert f"'{name}'" in result.output


def test_log_suggests_both_login_and_logs():
    result = runner.invoke(app, ["log"])
    assert result.output.count("Did you mean") == 1, result.output
    assert "'login'" in result.output and "'logs'" in result.output
