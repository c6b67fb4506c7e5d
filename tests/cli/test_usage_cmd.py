"""``tokn usage``: JSON sums, the --since/--until boundary, the table, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from typer.testing import CliRunner

from tokn.cli import app
from tokn.usage import UsageStore, default_path

runner = CliRunner()


def fill(rows):
    store = UsageStore(default_path())
    for row in rows:
        store.record(dict(row))
    store.close()


def run(*args):
    result = runner.invoke(app, ["usage", *args])
    return result


def test_since_1h_json_sums_match_the_rows():
    now = time.time()
    rows = [{"ts": now - 7200, "account": "old", "input_tokens": 1000, "output_tokens": 1000}]
    rows += [{"ts": now - 60 * i, "account": f"a{i % 2}", "provider": "openai",
              "model_requested": "gpt-4o", "status": 200 if i % 5 else 500,
              "input_tokens": i, "output_tokens": 2 * i, "cache_read_tokens": i % 3,
              "latency_ms": 10.0 * i} for i in range(1, 30)]
    fill(rows)
    result = run("--since", "1h", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    recent = rows[1:]
    t = data["totals"]
    assert t["requests"] == len(recent) == 29
    assert t["input_tokens"] == sum(r["input_tokens"] for r in recent)
    assert t["output_tokens"] == sum(r["output_tokens"] for r in recent)
    assert t["cache_read_tokens"] == sum(r["cache_read_tokens"] for r in recent)
    assert t["errors"] == 5 and abs(t["error_rate"] - 5 / 29) < 1e-6
    assert t["median_latency_ms"] == 150.0
    since = data["window"]["since"]
    assert abs(since["epoch_s"] - (now - 3600)) < 60 and since["iso"].endswith("Z")
    assert data["store"] == str(default_path())


def test_since_and_until_boundaries_via_the_cli():
    t0 = 1_790_000_000.0
    fill([{"ts": t0 - 1, "input_tokens": 1}, {"ts": t0, "input_tokens": 10},
          {"ts": t0 + 100, "input_tokens": 100}])
    data = json.loads(run("--since", str(int(t0)), "--json").stdout)
    assert data["totals"]["input_tokens"] == 110  # the row exactly at --since counts
    data = json.loads(run("--until", str(int(t0 + 100)), "--json").stdout)
    assert data["totals"]["input_tokens"] == 11   # the row exactly at --until does not
    data = json.loads(run("--since", "1790000000", "--until", "1790000000.5", "--json").stdout)
    assert data["totals"]["requests"] == 1


def test_filters_and_grouping_flags():
    now = time.time()
    fill([{"ts": now, "account": "a", "provider": "github-copilot", "model_requested": "x",
           "initiator": "user", "status": 200, "input_tokens": 1},
          {"ts": now, "account": "b", "provider": "zai", "model_requested": "y",
           "status": 200, "input_tokens": 2}])
    data = json.loads(run("--by", "provider", "--json").stdout)
    assert {g["key"]: g["input_tokens"] for g in data["groups"]} == {"github-copilot": 1,
                                                                     "zai": 2}
    assert data["totals"]["premium_requests"] == 1
    assert json.loads(run("--account", "b", "--json").stdout)["totals"]["input_tokens"] == 2
    assert json.loads(run("--model", "x", "--json").stdout)["totals"]["input_tokens"] == 1
    assert json.loads(run("--provider", "zai", "--json").stdout)["filters"] == {
        "provider": "zai"}


def test_table_output():
    fill([{"ts": time.time(), "account": "acct-1", "input_tokens": 1234, "status": 200,
           "latency_ms": 42.0}])
    result = run("--by", "account")
    assert result.exit_code == 0, result.output
    assert "acct-1" in result.stdout and "1,234" in result.stdout and "total" in result.stdout
    assert "42 ms" in result.stdout


def test_no_store_yet_is_an_empty_report():
    result = run("--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["totals"]["requests"] == 0
    assert "No usage recorded yet" in run().output


def test_bad_arguments_exit_2_with_a_message():
    result = run("--since", "last tuesday")
    assert result.exit_code == 2
    assert "--since" in result.output and "24h" in result.output
    result = run("--until", "1767225600000")
    assert result.exit_code == 2 and "milliseconds" in result.output
    result = run("--by", "colour")
    assert result.exit_code == 2 and "account" in result.output


def test_real_cli_reads_while_a_writer_holds_the_store_open():
    store = UsageStore(default_path())
    try:
        store.record({"input_tokens": 5})
        store.flush()
        out = subprocess.run([sys.executable, "-m", "tokn", "usage", "--json"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        assert json.loads(out)["totals"]["input_tokens"] == 5
    finally:
        store.close()
