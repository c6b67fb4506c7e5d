"""Smaller faults: an over-long event-stream line, a config that is not UTF-8,
the usage database deleted under a running server."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from tests.fakes.faults import FaultyLLM
from tests.fakes.llm import FakeLLM
from tests.helpers import (
    account,
    proxied_client,
    tokn_process,
    usage_rows,
    wait_for_rows,
    write_config,
)
from tokn import paths
from tokn.sse import SSEParser
from tokn.usage import default_path

CHAT = {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}


def test_sse_line_over_the_cap_is_an_error_not_a_hang():
    with FaultyLLM(fault="long_line", fault_after=200_000, formats={"chat"}, path_prefix="/v1",
                   models=["m1"]) as fake:
        write_config({"server": {"max_sse_line_mb": 0.1},
                      "accounts": [account("a", "openai-compatible", base_url=fake.url + "/v1")]})
        with tokn_process() as tokn:
            resp = httpx.post(tokn.api_url + "/v1/chat/completions", json={**CHAT, "stream": True})
    assert resp.status_code == 502
    assert "an event-stream line is longer than 0.1 MB ([server].max_sse_line_mb)" in resp.text
    (row,) = usage_rows()
    assert row["status"] == 502 and "max_sse_line_mb" in row["error"]


def test_sse_parser_cap_counts_split_lines_and_multi_line_events():
    parser = SSEParser(max_line=100)
    assert parser.feed(b"data: " + b"x" * 50) == []
    with pytest.raises(ValueError, match="longer than 100 bytes"):
        parser.feed(b"x" * 60)  # the line, split across feeds, is now 116 bytes
    parser = SSEParser(max_line=100)
    with pytest.raises(ValueError, match="event is longer"):
        parser.feed(b"".join(b"data: " + b"y" * 30 + b"\n" for _ in range(5)))
    # a line just under the cap is fine, however it is split
    parser = SSEParser(max_line=100)
    line = b"data: " + b"z" * 90 + b"\r\n\r\n"
    events = [ev for i in range(len(line)) for ev in parser.feed(line[i:i + 1])]
    assert [e.data for e in events] == ["z" * 90]


@pytest.mark.parametrize("argv", [["config", "list"], ["serve", "--port", "0"],
                                  ["account", "list"]])
def test_config_that_is_not_utf8_is_a_one_line_error(argv):
    path = paths.config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"[server]\nport = 4141\n# caf\xe9 in Latin-1\n")
    out = subprocess.run([sys.executable, "-m", "tokn", *argv], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr + out.stdout
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert f"{path}: not UTF-8 text (byte 0xe9 on line 3)" in lines[0]
    assert "tokn config edit" in lines[0]


def test_usage_database_deleted_while_running_is_recreated_and_logged():
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m1"]) as fake:
        write_config({"accounts": [account("a", "openai-compatible", base_url=fake.url + "/v1")]})
        with tokn_process() as tokn:
            assert httpx.post(tokn.api_url + "/v1/chat/completions", json=CHAT).status_code == 200
            assert len(wait_for_rows(1)) == 1
            db = default_path()
            for suffix in ("", "-wal", "-shm"):
                db.with_name(db.name + suffix).unlink(missing_ok=True)
            for text in ("after", "again"):
                resp = httpx.post(tokn.api_url + "/v1/chat/completions",
                                  json={**CHAT, "messages": [{"role": "user", "content": text}]})
                assert resp.status_code == 200
            rows = wait_for_rows(2)
            output = tokn.output()
    assert len(rows) == 2 and all(r["status"] == 200 for r in rows)
    assert f"usage: {db} was deleted or replaced while tokn was running; creating it again" \
        in output
    assert oct(db.stat().st_mode & 0o777) == "0o600"


def test_passthrough_line_over_the_cap_goes_through_unobserved(public_ca, tls_context_for):
    _, root = public_ca
    with FaultyLLM(fault="long_line", fault_after=200_000, formats={"chat"}, path_prefix="/v1",
                   models=["gpt-4o"], ssl_context=tls_context_for("api.openai.com")) as fake:
        write_config({"server": {"max_sse_line_mb": 0.1},
                      "proxy_mode": {"route_mode": "passthrough", "upstream_ca_bundle": str(root),
                                     "upstream_overrides": {
                                         "api.openai.com": f"127.0.0.1:{fake.port}"}}})
        with tokn_process(with_proxy=True) as tokn, \
                proxied_client(tokn.proxy_url, timeout=30) as client:
            resp = client.post("https://api.openai.com/v1/chat/completions",
                               json={**CHAT, "model": "gpt-4o", "stream": True},
                               headers={"authorization": "Bearer sk-client"})
            rows = wait_for_rows(1)
    assert resp.status_code == 200 and len(resp.content) > 200_000  # the client's bytes, intact
    (row,) = rows
    assert row["status"] == 200
    assert row["error"].startswith("usage not observed: an event-stream line is longer than")
