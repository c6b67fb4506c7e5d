"""A minimal, fast OpenAI-style upstream for the benchmarks (its own process).

    python bench/fast_upstream.py [--port 0] [--stream-secs 0.75] [--stream-events 16]

Raw HTTP/1.1 on an ``asyncio.Protocol`` (no framework, keep-alive, no Nagle):
``GET /v1/models`` lists ``bench-model``; a POST whose body has
``"stream": true`` gets a chat-completion SSE stream of ``--stream-events``
content chunks spread over ``--stream-secs`` (then a usage chunk and
``[DONE]``, chunked encoding); any other POST gets one fixed chat completion.
The body is read whole (Content-Length) and otherwise ignored, so the server
costs the same for every caller.  Prints ``PORT <n>`` once listening.  Several
tens of thousands of small requests per second on one core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys

COMPLETION = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000,
    "model": "bench-model",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "pong"}}],
    "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9},
}, separators=(",", ":")).encode()
MODELS = json.dumps({"object": "list", "data": [
    {"id": "bench-model", "object": "model", "created": 1700000000, "owned_by": "bench"}]},
    separators=(",", ":")).encode()


def _response(body: bytes, ctype: bytes = b"application/json") -> bytes:
    return (b"HTTP/1.1 200 OK\r\ncontent-type: " + ctype + b"\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


COMPLETION_RESPONSE = _response(COMPLETION)
MODELS_RESPONSE = _response(MODELS)
STREAM_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
               b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")


def _chunk(payload: dict | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    event = f"data: {data}\n\n".encode()
    return f"{len(event):x}\r\n".encode() + event + b"\r\n"


def stream_chunks(events: int) -> list[bytes]:
    """The encoded chunks of one stream: role, ``events`` contents, stop, usage, DONE."""
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk",
            "created": 1700000000, "model": "bench-model"}
    out = [_chunk({**base, "choices": [{"index": 0, "delta": {"role": "assistant",
                                                                "content": ""}}]})]
    out += [_chunk({**base, "choices": [{"index": 0, "delta": {"content": f"w{i} "}}]})
            for i in range(events)]
    out.append(_chunk({**base, "choices": [{"index": 0, "delta": {},
                                            "finish_reason": "stop"}]}))
    out.append(_chunk({**base, "choices": [], "usage": {
        "prompt_tokens": 8, "completion_tokens": events, "total_tokens": 8 + events}}))
    out.append(_chunk("[DONE]") + b"0\r\n\r\n")
    return out


class Upstream(asyncio.Protocol):
    """One connection: parse requests in turn, answer each from the canned bytes."""

    stream_secs = 0.75
    chunks: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.need = -1  # bytes of head + body still to arrive; -1: head not parsed yet
        self.head = b""
        self.body_at = 0
        self.busy = False  # a stream is being written; requests behind it wait

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._process()

    def _process(self) -> None:
        while not self.busy:
            if self.need < 0:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                self.head = bytes(self.buf[:end]).lower()
                length = 0
                at = self.head.find(b"\r\ncontent-length:")
                if at >= 0:
                    stop = self.head.find(b"\r\n", at + 2)
                    length = int(self.head[at + 17:stop if stop > 0 else None])
                if b"\r\nexpect: 100-continue" in self.head:
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                self.body_at = end + 4
                self.need = end + 4 + length
            if len(self.buf) < self.need:
                return
            body = bytes(self.buf[self.body_at:self.need])
            del self.buf[:self.need]
            self.need = -1
            self._answer(self.head, body)

    def _answer(self, head: bytes, body: bytes) -> None:
        if head.startswith(b"get ") and b" /v1/models" in head[:40]:
            self.transport.write(MODELS_RESPONSE)
        elif b'"stream":true' in body or b'"stream": true' in body:
            self.busy = True
            asyncio.get_running_loop().create_task(self._stream())
        else:
            self.transport.write(COMPLETION_RESPONSE)

    async def _stream(self) -> None:
        chunks = self.chunks
        gap = self.stream_secs / max(len(chunks) - 1, 1)
        try:
            self.transport.write(STREAM_HEAD + chunks[0])
            for chunk in chunks[1:]:
                await asyncio.sleep(gap)
                if self.transport.is_closing():
                    return
                self.transport.write(chunk)
        finally:
            self.busy = False
        self._process()


async def serve(port: int, stream_secs: float, stream_events: int) -> None:
    Upstream.stream_secs = stream_secs
    Upstream.chunks = stream_chunks(stream_events)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "127.0.0.1", port, backlog=4096)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stream-secs", type=float, default=0.75,
                        help="how long one stream lasts, first to last chunk")
    parser.add_argument("--stream-events", type=int, default=16,
                        help="content chunks in one stream")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port, args.stream_secs, args.stream_events))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
