"""Server-sent events: an incremental parser and an encoder.

The parser follows the WHATWG event-stream rules (``\\r\\n``, ``\\r`` or ``\\n``
line ends, ``:`` comment lines, multi-line ``data``, one optional space after
the colon) and accepts events split anywhere across ``feed()`` calls.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass
class SSEEvent:
    event: str | None
    data: str
    id: str | None = None

    def json(self) -> Any:
        """The data parsed as JSON (raises ``ValueError`` when it is not)."""
        return json.loads(self.data)


class SSEParser:
    """Feed bytes, get complete events back."""

    def __init__(self) -> None:
        self._buf = b""
        self._event: str | None = None
        self._data: list[str] = []
        self._id: str | None = None
        self._last_id: str | None = None

    def feed(self, data: bytes) -> list[SSEEvent]:
        self._buf += data
        out: list[SSEEvent] = []
        while True:
            line, rest = _split_line(self._buf)
            if line is None:
                break
            self._buf = rest
            ev = self._line(line.decode("utf-8", errors="replace"))
            if ev is not None:
                out.append(ev)
        return out

    def close(self) -> list[SSEEvent]:
        """Flush what is left: a last line without its end, a last event without its blank line."""
        out: list[SSEEvent] = []
        if self._buf:
            tail, self._buf = self._buf, b""
            for line in tail.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
                ev = self._line(line.decode("utf-8", errors="replace"))
                if ev is not None:
                    out.append(ev)
        ev = self._dispatch()
        if ev is not None:
            out.append(ev)
        return out

    def _line(self, line: str) -> SSEEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value or None
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> SSEEvent | None:
        if self._id is not None:
            self._last_id = self._id
        event, data = self._event, self._data
        self._event, self._data, self._id = None, [], None
        if not data:
            return None
        return SSEEvent(event=event, data="\n".join(data), id=self._last_id)


def _split_line(buf: bytes) -> tuple[bytes | None, bytes]:
    """The first complete line of ``buf`` and the rest; ``None`` when no line is complete."""
    n, r = buf.find(b"\n"), buf.find(b"\r")
    if n < 0 and r < 0:
        return None, buf
    if r < 0 or (0 <= n < r):
        return buf[:n], buf[n + 1 :]
    if r == len(buf) - 1:  # a lone "\r" at the end may be half of "\r\n": wait for more
        return None, buf
    end = r + 2 if buf[r + 1 : r + 2] == b"\n" else r + 1
    return buf[:r], buf[end:]


def encode_event(data: dict[str, Any] | str, event: str | None = None) -> bytes:
    """One SSE event: ``event: x\\ndata: {...}\\n\\n`` (dicts as compact JSON)."""
    text = (
        data
        if isinstance(data, str)
        else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    )
    head = f"event: {event}\n" if event else ""
    body = "".join(f"data: {line}\n" for line in text.split("\n"))
    return (head + body + "\n").encode("utf-8")
