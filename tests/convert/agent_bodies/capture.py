"""Capture the request bodies the real ``claude`` / ``codex`` CLIs send, for
refreshing the fixtures in this folder (run by hand, not by the suite):

    python tests/convert/agent_bodies/capture.py claude OUT_DIR
    python tests/convert/agent_bodies/capture.py codex OUT_DIR

A loopback server plays the model: on the first turn it asks for a tool call
(Claude: ``Write``, with thinking and a redacted_thinking block when thinking is
on; Codex: ``exec_command`` after a reasoning item), so the second request
carries tool use and results. Each request is written to ``OUT_DIR/NNN.json``
(method, path, headers without credentials, body) with local paths and device
ids replaced. The CLIs run in a temporary HOME / CODEX_HOME, offline.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BIN = Path(os.environ.get("TOKN_NPM_BIN", "/opt/npmcache/node_modules/.bin"))
PROMPT = "Create a file hello.txt containing hi"
KEEP = {"anthropic-beta", "anthropic-version", "user-agent", "x-app", "originator", "accept"}


def _sse(events: list[tuple[str, dict[str, Any]]]) -> bytes:
    return b"".join(f"event: {e}\ndata: {json.dumps(d)}\n\n".encode() for e, d in events)


def _messages_answer(body: dict[str, Any], cwd: str) -> list[tuple[str, dict[str, Any]]]:
    turns = [m for m in body["messages"] if m.get("role") != "system"]
    last = turns[-1]["content"]
    answered = isinstance(last, list) and any(b.get("type") == "tool_result" for b in last)
    tool = "Write" in [t.get("name") for t in body.get("tools") or []] and not answered
    msg = {"id": "msg_01", "type": "message", "role": "assistant", "model": body["model"],
           "content": [], "stop_reason": None, "stop_sequence": None,
           "usage": {"input_tokens": 10, "output_tokens": 1}}
    out: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start",
                                                                 "message": msg})]
    blocks: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    if tool and (body.get("thinking") or {}).get("type") not in (None, "disabled"):
        blocks += [({"type": "thinking", "thinking": "", "signature": ""},
                    {"type": "signature_delta", "signature": "c2lnbmF0dXJl"}),
                   ({"type": "redacted_thinking", "data": "cmVkYWN0ZWQ="}, None)]
    if tool:
        args = json.dumps({"file_path": os.path.join(cwd, "hello.txt"), "content": "hi\n"})
        blocks += [({"type": "text", "text": "I'll write it."}, None),
                   ({"type": "tool_use", "id": "toolu_01A", "name": "Write", "input": {}},
                    {"type": "input_json_delta", "partial_json": args})]
    else:
        blocks.append(({"type": "text", "text": "Done."}, None))
    for i, (block, delta) in enumerate(blocks):
        out.append(("content_block_start", {"type": "content_block_start", "index": i,
                                            "content_block": block}))
        if delta:
            out.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                "delta": delta}))
        out.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    stop = "tool_use" if tool else "end_turn"
    out += [("message_delta", {"type": "message_delta", "usage": {"output_tokens": 5},
                               "delta": {"stop_reason": stop, "stop_sequence": None}}),
            ("message_stop", {"type": "message_stop"})]
    return out


def _responses_answer(body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    seq = itertools.count()
    names = [t.get("name") for t in body.get("tools") or []]
    answered = any(isinstance(i, dict) and i.get("type") == "function_call_output"
                   for i in body.get("input") or [])
    resp = {"id": "resp_1", "object": "response", "created_at": 1, "status": "in_progress",
            "model": body["model"], "output": []}

    def ev(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        return kind, {"type": kind, "sequence_number": next(seq), **fields}

    if "exec_command" in names and not answered:
        args = json.dumps({"cmd": "echo hi > hello.txt"})
        output = [{"id": "rs_1", "type": "reasoning", "encrypted_content": "gAAAAB==",
                   "summary": [{"type": "summary_text", "text": "**Writing the file**"}]},
                  {"id": "fc_1", "type": "function_call", "status": "completed",
                   "call_id": "call_1", "name": "exec_command", "arguments": args}]
    else:
        output = [{"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
                   "content": [{"type": "output_text", "text": "Done.", "annotations": []}]}]
    events = [ev("response.created", response=resp)]
    for i, item in enumerate(output):
        events += [ev("response.output_item.added", output_index=i, item=item),
                   ev("response.output_item.done", output_index=i, item=item)]
    usage = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": 12}
    events.append(ev("response.completed",
                     response={**resp, "status": "completed", "output": output, "usage": usage}))
    return events


def serve(out: Path, cwd: str) -> ThreadingHTTPServer:
    counter = itertools.count()

    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: bytes = b"", kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            # 426: Codex's WebSocket attempt falls back to HTTPS at once
            self._reply(426 if self.headers.get("upgrade") else 404)

        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            body = json.loads(raw)
            headers = {k.lower(): v for k, v in self.headers.items() if k.lower() in KEEP}
            record = {"method": "POST", "path": self.path, "headers": headers, "body": body}
            (out / f"{next(counter):03d}.json").write_text(json.dumps(record, indent=1))
            if "count_tokens" in self.path:
                self._reply(200, b'{"input_tokens": 100}')
            elif "/messages" in self.path:
                self._reply(200, _sse(_messages_answer(body, cwd)), "text/event-stream")
            elif "/responses" in self.path:
                self._reply(200, _sse(_responses_answer(body)), "text/event-stream")
            else:
                self._reply(404)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(agent: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as home:
        work = Path(home, "project")
        work.mkdir()
        server = serve(out, str(work))
        url = f"http://127.0.0.1:{server.server_address[1]}"
        env = {**os.environ, "HOME": home}
        if agent == "claude":
            env.update(ANTHROPIC_BASE_URL=url, ANTHROPIC_API_KEY="x")
            cmd = [str(BIN / "claude"), "-p", PROMPT, "--permission-mode", "acceptEdits",
                   "--allowedTools", "Write,Read"]
        else:
            codex_home = Path(home, ".codex")
            codex_home.mkdir()
            (codex_home / "config.toml").write_text(
                'model_provider = "capture"\n[model_providers.capture]\nname = "capture"\n'
                f'base_url = "{url}/v1"\nwire_api = "responses"\nenv_key = "OPENAI_API_KEY"\n')
            env.update(CODEX_HOME=str(codex_home), OPENAI_API_KEY="x")
            cmd = [str(BIN / "codex"), "exec", "--skip-git-repo-check", "-s", "workspace-write",
                   "-m", "gpt-5.2", PROMPT]
        subprocess.run(cmd, cwd=work, env=env, timeout=180, check=False,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        server.shutdown()
        for path in out.glob("*.json"):
            path.write_text(path.read_text().replace(home, "/home/user"))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("claude", "codex"):
        sys.exit("usage: capture.py claude|codex OUT_DIR")
    main(sys.argv[1], Path(sys.argv[2]))
