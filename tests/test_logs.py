"""Logging set-up ([logging] level/format/file) and ``tokn logs`` (tail, level, follow)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time

import pytest
from typer.testing import CliRunner

from tests.helpers import write_config
from tokn.cli import app
from tokn.config import Config
from tokn.logs import follow, line_level, records, setup_logging, tail

runner = CliRunner()


@pytest.fixture(autouse=True)
def restore_tokn_logger():
    root = logging.getLogger("tokn")
    saved = (list(root.handlers), root.level, root.propagate)
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    root.handlers[:], root.level, root.propagate = saved[0], saved[1], saved[2]


def cfg(tmp_path, fmt="text", level="info", file=True):
    c = Config()
    c.logging.format, c.logging.level = fmt, level
    c.logging.file = str(tmp_path / "logs" / "tokn.log") if file else ""
    return c


def test_json_lines_carry_structured_fields(tmp_path):
    c = cfg(tmp_path, fmt="json")
    setup_logging(c)
    fields = {"request_id": "abc", "mode": "route", "account": "acct", "model": "gpt-4o",
              "status": 200, "latency_ms": 12.5}
    logging.getLogger("tokn.request").info("abc route ... 200", extra={"fields": fields})
    logging.getLogger("tokn.request").debug("not at info level")
    try:
        raise RuntimeError("kaput")
    except RuntimeError:
        logging.getLogger("tokn").exception("it broke")
    lines = (tmp_path / "logs" / "tokn.log").read_text().splitlines()
    assert len(lines) == 2  # one line per record, traceback inside the JSON
    first, second = (json.loads(x) for x in lines)
    assert first["level"] == "info" and first["logger"] == "tokn.request"
    assert {k: first[k] for k in fields} == fields
    assert first["ts"].endswith("Z")
    assert second["level"] == "error" and "RuntimeError: kaput" in second["exc"]
    assert oct((tmp_path / "logs" / "tokn.log").stat().st_mode & 0o777) == "0o600"


def test_text_lines_go_to_the_file_and_to_a_terminal_s_stderr(tmp_path, capsys):
    setup_logging(cfg(tmp_path, level="debug"))
    log = logging.getLogger("tokn.request")
    log.debug("dbg line")
    log.info("req line")
    log.warning("warn line")
    text = (tmp_path / "logs" / "tokn.log").read_text()
    assert [line_level(x) for x in text.splitlines()] == [10, 20, 30]
    assert "INFO tokn.request req line" in text
    err = capsys.readouterr().err  # a tokn in the foreground shows its requests too
    assert [line_level(x) for x in err.splitlines()] == [10, 20, 30]


def test_without_a_file_set_the_log_is_tokn_log_in_the_state_dir(tokn_home, capsys):
    path = setup_logging(cfg(tokn_home, file=False))
    logging.getLogger("tokn.request").info("to both")
    assert path == tokn_home / "state" / "tokn.log"
    assert "to both" in path.read_text() and "to both" in capsys.readouterr().err
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"


DETACHED = """
import logging, os, sys
sys.path.insert(0, {repo!r})
from tokn import logs
from tokn.config import Config
logs.MAX_BYTES = 400
cfg = Config()
logs.setup_logging(cfg)
log = logging.getLogger("tokn")
for i in range(12):
    log.info("record %02d %s", i, "x" * 40)
print("printed after the rotations", flush=True)
os.write(2, b"written to fd 2 after the rotations\\n")
"""


def test_a_process_whose_stderr_is_the_log_writes_once_and_follows_rotation(tokn_home):
    """`tokn start` appends the process's stdout/stderr to the log file: records
    are not written twice, and after a rotation fds 1 and 2 are the new file."""
    from pathlib import Path

    state = tokn_home / "state"
    state.mkdir(mode=0o700)
    path = state / "tokn.log"
    repo = str(Path(__file__).resolve().parents[1])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        subprocess.run([sys.executable, "-c", DETACHED.format(repo=repo)], stdout=fd,
                       stderr=fd, env=dict(os.environ), timeout=60, check=True)
    finally:
        os.close(fd)
    rotated = sorted(state.glob("tokn.log.*"))
    assert rotated, "nothing rotated: the test did not test rotation"
    texts = [path.read_text()] + [p.read_text() for p in rotated]
    everything = "".join(texts)
    for i in range(12):  # each record exactly once (no stderr copy)
        assert everything.count(f"record {i:02d} ") == 1, everything
    current = texts[0]
    assert "printed after the rotations" in current
    assert "written to fd 2 after the rotations" in current
    for p in rotated:
        assert oct(p.stat().st_mode & 0o777) == "0o600"


SAMPLE = """2026-11-01 10:00:00,001 INFO tokn.request r1 route ok
2026-11-01 10:00:01,002 ERROR tokn boom
Traceback (most recent call last):
  File "x.py", line 1, in <module>
ValueError: nope
{"ts": "2026-11-01T09:00:02.000Z", "level": "warning", "logger": "tokn", "message": "w"}
{"ts": "2026-11-01T09:00:03.000Z", "level": "error", "logger": "tokn", "message": "e"}
2026-11-01 10:00:04,004 DEBUG tokn.pool d
"""


def test_records_group_tracebacks_with_their_line():
    recs = list(records(SAMPLE.splitlines()))
    assert [level for level, _ in recs] == [20, 40, 30, 40, 10]
    assert len(recs[1][1]) == 4


def test_tail_filters_by_level_for_text_and_json(tmp_path):
    path = tmp_path / "t.log"
    path.write_text(SAMPLE)
    errors = tail(path, 50, 40)
    assert errors[0].endswith("ERROR tokn boom") and errors[-1].startswith('{"ts"')
    assert len(errors) == 5  # the error + 3 traceback lines + the JSON error
    assert tail(path, 1, 0) == ["2026-11-01 10:00:04,004 DEBUG tokn.pool d"]
    assert len(tail(path, 2, 30)) == 2
    assert tail(path, 0, 0) == []


def test_follow_prints_appended_records_and_survives_rotation(tmp_path):
    path = tmp_path / "f.log"
    path.write_text("2026-11-01 10:00:00,000 ERROR tokn old, before following\n")
    got: list[str] = []
    done = threading.Event()
    thread = threading.Thread(target=follow, kwargs=dict(
        path=path, min_level=30, write=got.append, stop=done.is_set, poll=0.02))
    thread.start()
    try:
        time.sleep(0.2)
        with open(path, "a") as fh:
            fh.write("2026-11-01 10:00:01,000 INFO tokn skipped\n")
            fh.write("2026-11-01 10:00:02,000 ERROR tokn shown\n  continuation\n")
            fh.write('{"level": "warning", "message": "json shown"}\n')
            fh.write("2026-11-01 10:00:03,000 ERROR tokn partial")
        _wait(lambda: len(got) >= 3)
        with open(path, "a") as fh:
            fh.write(" line completed\n")
        _wait(lambda: len(got) >= 4)
        os.rename(path, tmp_path / "f.log.1")  # what RotatingFileHandler does
        path.write_text("2026-11-01 10:00:04,000 ERROR tokn after rotation\n")
        _wait(lambda: len(got) >= 5)
    finally:
        done.set()
        thread.join(5)
    assert got == ["2026-11-01 10:00:02,000 ERROR tokn shown", "  continuation",
                   '{"level": "warning", "message": "json shown"}',
                   "2026-11-01 10:00:03,000 ERROR tokn partial line completed",
                   "2026-11-01 10:00:04,000 ERROR tokn after rotation"]


def _wait(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.02)


# --- the command ----------------------------------------------------------------------
def test_logs_before_tokn_ever_ran_names_the_file_and_how_it_appears(tokn_home):
    result = runner.invoke(app, ["logs"])
    assert result.exit_code == 1
    assert str(tokn_home / "state" / "tokn.log") in result.output
    assert "`tokn start`" in result.output


def test_logs_command_tail_and_level(tokn_home):
    path = tokn_home / "tokn.log"
    path.write_text(SAMPLE)
    write_config({"logging": {"file": str(path)}})
    result = runner.invoke(app, ["logs", "--level", "error"])
    assert result.exit_code == 0, result.output
    assert "boom" in result.stdout and '"message": "e"' in result.stdout
    assert "r1 route ok" not in result.stdout and '"message": "w"' not in result.stdout
    result = runner.invoke(app, ["logs", "-n", "1"])
    assert result.stdout.splitlines() == ["2026-11-01 10:00:04,004 DEBUG tokn.pool d"]
    assert runner.invoke(app, ["logs", "--level", "loud"]).exit_code == 2


def test_follow_resumes_where_tail_stopped(tmp_path):
    """A line written between the tail and the follow is printed (it was lost when
    follow started from the end of the file)."""
    from tokn.logs import tail_for_follow

    path = tmp_path / "f.log"
    path.write_text("2026-11-01 10:00:00,000 INFO tokn earlier\n"
                    "2026-11-01 10:00:01,000 INFO tokn half")
    shown, start = tail_for_follow(path, 5, 0)
    assert shown == ["2026-11-01 10:00:00,000 INFO tokn earlier"]
    with open(path, "a") as fh:
        fh.write(" written\n2026-11-01 10:00:02,000 INFO tokn in between\n")
    got: list[str] = []
    done = threading.Event()
    thread = threading.Thread(target=follow, kwargs=dict(
        path=path, write=got.append, stop=done.is_set, poll=0.02, start=start))
    thread.start()
    try:
        _wait(lambda: len(got) >= 2)
    finally:
        done.set()
        thread.join(5)
    assert got == ["2026-11-01 10:00:01,000 INFO tokn half written",
                   "2026-11-01 10:00:02,000 INFO tokn in between"]


def test_logs_follow_real_process(tokn_home):
    import queue

    path = tokn_home / "tokn.log"
    path.write_text("2026-11-01 10:00:00,000 INFO tokn earlier\n")
    write_config({"logging": {"file": str(path)}})
    proc = subprocess.Popen([sys.executable, "-m", "tokn", "logs", "-f", "-n", "5"],
                            stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout],
                     daemon=True).start()
    try:
        assert lines.get(timeout=30).strip().endswith("earlier")
        with open(path, "a") as fh:
            fh.write("2026-11-01 10:00:01,000 INFO tokn later\n")
        assert lines.get(timeout=30).strip().endswith("later")
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_record_is_formatted_once_for_the_file_and_stderr(tmp_path, capsys, fmt, monkeypatch):
    from tokn import logs

    calls = []
    original = logs.JsonFormatter.render if fmt == "json" else logs.OnceFormatter.render
    target = logs.JsonFormatter if fmt == "json" else logs.OnceFormatter

    def counting(self, record):
        calls.append(record.getMessage())
        return original(self, record)

    monkeypatch.setattr(target, "render", counting)
    path = setup_logging(cfg(tmp_path, fmt=fmt))
    logging.getLogger("tokn.request").info("one line %d", 1)
    assert calls == ["one line 1"]
    assert "one line 1" in path.read_text()
    assert "one line 1" in capsys.readouterr().err


def test_rotation_counts_what_it_writes_and_what_others_append(tmp_path, monkeypatch):
    from tokn import logs

    monkeypatch.setattr(logs, "MAX_BYTES", 2000)
    path = setup_logging(cfg(tmp_path))
    log = logging.getLogger("tokn")
    for i in range(60):  # ~60 x 80 bytes: at least two rotations
        log.warning("record %02d %s", i, "x" * 40)
    rotated = sorted(path.parent.glob("tokn.log.*"))
    assert len(rotated) >= 2
    for p in [path, *rotated]:
        assert p.stat().st_size <= 2000, p
    everything = "".join(p.read_text() for p in [path, *rotated])
    assert all(everything.count(f"record {i:02d} ") == 1 for i in range(60))
    # bytes appended behind the handler's back are counted within a second
    with open(path, "a") as other:
        other.write("y" * 1900 + "\n")
    time.sleep(1.1)
    log.warning("after the outside write")
    # it rotated first: the outside bytes are in the rotated file, the record alone here
    assert "y" * 1900 in (path.parent / "tokn.log.1").read_text()
    assert "after the outside write" in path.read_text() and path.stat().st_size < 200
