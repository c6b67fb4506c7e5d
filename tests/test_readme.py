"""The docs cannot drift from the CLI: every ``tokn …`` command line in the README's
(and the CA guide's) code blocks parses — its command, options, values and
arguments exist — and every ``tokn …`` in inline code names a real command and
real options."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import typer.main
from click.testing import CliRunner

from tokn import data
from tokn.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", data.path("ca-readme")]
SHELLS = ("sh", "bash", "console", "shell", "")
SUBST = re.compile(r"\$\(([^()]*)\)")
OPERATORS = {"&&", "||", "|", ";", "&", "(", ")", "|&"}


def _parser() -> click.Command:
    """tokn's click tree with every command body replaced by a no-op: invoking it
    only parses (options, types, choices, required arguments)."""
    root = typer.main.get_command(app)

    def stub(cmd: click.Command) -> None:
        cmd.callback = lambda *a, **k: None
        if isinstance(cmd, click.Group):
            for sub in cmd.commands.values():
                stub(sub)

    stub(root)
    return root


PARSER = _parser()


def shell_commands(line: str) -> Iterator[list[str]]:
    """Every simple command of a shell line, those inside ``$(...)`` included."""
    for inner in SUBST.findall(line):
        yield from shell_commands(inner)
    lexer = shlex.shlex(SUBST.sub("SUBSTITUTED", line), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    current: list[str] = []
    for token in lexer:
        if token in OPERATORS:
            if current:
                yield current
            current = []
        else:
            current.append(token)
    if current:
        yield current


def tokn_lines(text: str) -> Iterator[list[str]]:
    for command in shell_commands(text):
        # skip `VAR=value` prefixes; `.venv/bin/tokn` counts as tokn
        words = [w for w in command if not re.match(r"^[A-Z_]+=", w)] if command else []
        if words and Path(words[0]).name == "tokn":
            yield words[1:]


def fenced(text: str) -> tuple[list[tuple[str, str]], str]:
    """The fenced code blocks of a Markdown text as (language, body), and the
    text without them."""
    blocks, prose, body, lang = [], [], [], None
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            if lang is None:
                lang, body = line[3:].strip(), []
            else:
                blocks.append((lang, "".join(body)))
                lang = None
        elif lang is None:
            prose.append(line)
        else:
            body.append(line)
    return blocks, "".join(prose)


def _blocks() -> list[tuple[str, str]]:
    out = []
    for doc in DOCS:
        for lang, body in fenced(doc.read_text(encoding="utf-8"))[0]:
            if lang not in SHELLS:
                continue
            for line in body.replace("\\\n", " ").splitlines():
                out.extend((f"{doc.name}: {line.strip()}", shlex.join(args))
                           for args in tokn_lines(line))
    return out


def _inline() -> list[tuple[str, str]]:
    out = []
    for doc in DOCS:
        prose = fenced(doc.read_text(encoding="utf-8"))[1]
        for span in prose.replace("\n", " ").split("`")[1::2]:
            if re.search(r"(^|\$\(|[|;&]\s*)(\S*/)?tokn\s", span):
                out.extend((f"{doc.name}: `{span}`", shlex.join(args))
                           for args in tokn_lines(span)
                           if args and not args[0].isupper())   # `tokn COMMAND --help`
    return out


BLOCK_LINES = _blocks()
INLINE_SPANS = _inline()


def test_the_docs_have_commands_to_check():
    assert len(BLOCK_LINES) >= 20 and len(INLINE_SPANS) >= 30
    shown = {args for _, args in BLOCK_LINES}
    assert "proxy env" in shown and "serve --with-proxy" in shown   # found inside $(...) too


@pytest.mark.parametrize("where,args", BLOCK_LINES, ids=[w for w, _ in BLOCK_LINES])
def test_code_block_command_parses(where, args):
    result = CliRunner().invoke(PARSER, shlex.split(args), prog_name="tokn")
    assert result.exit_code == 0, f"{where}\n{result.output}"


@pytest.mark.parametrize("where,args", INLINE_SPANS, ids=[w for w, _ in INLINE_SPANS])
def test_inline_command_names_real_command_and_options(where, args):
    # placeholders (KEY, HOST, [--method …]) are fine here; with --help appended
    # click still rejects an unknown command or option
    result = CliRunner().invoke(PARSER, [*shlex.split(args), "--help"], prog_name="tokn")
    assert result.exit_code == 0, f"{where}\n{result.output}"


def test_a_drifted_line_is_caught():
    for args in ("serve --with-proxxy", "acount list", "serve --port eighty", "config set",
                 "proxy --route-mode teleport"):
        result = CliRunner().invoke(PARSER, shlex.split(args), prog_name="tokn")
        assert result.exit_code != 0, args
