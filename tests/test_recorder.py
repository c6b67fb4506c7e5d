"""One usage row type built into the schema, and one recorder for both front doors."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from tests.helpers import stored_rows
from tokn import usage
from tokn.config import Config
from tokn.convert import Usage
from tokn.endings import Ending
from tokn.recorder import Recorder
from tokn.usage import NAMES, UsageRow, connect


def test_the_schema_is_the_row_type_and_still_version_ones_table():
    assert tuple(f.name for f in dataclasses.fields(UsageRow)) == NAMES
    with connect(usage.default_path()) as conn:
        table = [(r[1], r[2], bool(r[3]), r[4]) for r in conn.execute(
            "PRAGMA table_info(requests)")][1:]  # after the id
    assert [name for name, *_ in table] == list(NAMES)
    assert {name: kind for name, kind, *_ in table} == {
        name: decl.split()[0] for name, decl in usage.COLUMNS}


def test_a_misspelt_column_is_an_error_not_a_lost_value():
    with pytest.raises(TypeError):
        UsageRow(reqest_id="x")  # type: ignore[call-arg]
    row = UsageRow()
    with pytest.raises(AttributeError):
        row.reqest_id = "x"  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        row.update({"credit": 1.0})


def test_an_attempt_is_recorded_once_with_its_timing_usage_and_columns(store):
    cfg = Config()
    attempt = Recorder(store, lambda: cfg).begin(UsageRow(request_id="r1", front_door="proxy"))
    attempt.first_byte()
    attempt.finish(None, status=200, usage=Usage(input_tokens=5, output_tokens=2),
                   served="m-1", bytes_out=10, extra={"credits": 0.5})
    attempt.finish(Ending(502, "too late"))  # the first finish wins
    [row] = stored_rows(store)
    assert {k: row[k] for k in ("request_id", "front_door", "status", "error", "input_tokens",
                                "output_tokens", "model_served", "bytes_out", "credits")} == {
        "request_id": "r1", "front_door": "proxy", "status": 200, "error": None,
        "input_tokens": 5, "output_tokens": 2, "model_served": "m-1", "bytes_out": 10,
        "credits": 0.5}
    assert 0 <= row["ttfb_ms"] <= row["latency_ms"] and row["ts"] > 0


def test_an_ending_wins_over_the_status_and_is_logged(store, caplog):
    cfg = Config()
    with caplog.at_level(logging.INFO, logger="tokn.request"):
        Recorder(store, lambda: cfg).begin(UsageRow(request_id="r2")).finish(
            Ending(499, "client closed"), status=200)
    [row] = stored_rows(store)
    assert (row["status"], row["error"]) == (499, "client closed")
    [line] = [r for r in caplog.records if r.name == "tokn.request"]
    assert line.fields["request_id"] == "r2" and line.fields["status"] == 499


def test_bodies_follow_the_config_in_force():
    cfg = Config()
    recorder = Recorder(None, lambda: cfg)
    assert recorder.capture({"model": "m"}) is None
    cfg.usage.record_bodies = True
    assert json.loads(recorder.capture({"model": "m"})) == {"model": "m"}
    capture = recorder.body_capture()
    capture.feed(b"data: x\n\n")
    assert capture.text() == "data: x\n\n"


def test_the_live_feed_gets_the_row_with_its_time(store):
    Recorder(store, Config).begin(UsageRow(request_id="r3")).finish(None, status=200)
    [(_, row)] = store.feed.recent(0)
    assert row["request_id"] == "r3" and row["ts"] > 0 and row["status"] == 200
