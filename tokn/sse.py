"""Server-sent events: an incremental parser and an encoder.

The parser follows the WHATWG event-stream rules (``\\r\\n``, ``\\r`` or ``\\n``
line ends, ``:`` comment lines, multi-line ``data``, one optional space after
the colon) and accepts events split anywhere across ``feed()`` calls.  It is
linear in the bytes fed (each byte is scanned once, however a line is split)
and refuses a line or event longer than ``max_line`` bytes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_LINE = 16 * 1024 * 1024  # [server].max_sse_line_mb's default
_EOL = re.compile(rb"[\r\n]")


@dataclass
class SSEEvent:
    event: str | None
    data: str
    id: str | None = None

    def json(self) -> Any:
        """The data parsed as JSON (raises ``ValueError`` when it is not)."""
        return json.loads(self.data)


class SSEParser:
    """Feed bytes, get complete events back.

    ``feed`` raises :class:`ValueError` when a line (or an event's data) grows
    past ``max_line`` bytes; the parser is unusable after that.
    """

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._scan = 0  # bytes at the start of _buf known to hold no line end
        self._cr = False  # _buf holds a "\r"
        self._event: str | None = None
        self._data: list[str] = []
        self._size = 0  # bytes of _data
        self._id: str | None = None
        self._last_id: str | None = None

    def feed(self, data: bytes) -> list[SSEEvent]:
        buf = self._buf
        buf += data
        out: list[SSEEvent] = []
        start = 0
        pos = self._scan
        crlf = b"\r" in data or self._cr
        while True:
            if crlf:
                match = _EOL.search(buf, pos)
                end = match.start() if match is not None else -1
            else:  # the common "\n"-only stream: a plain find is faster
                end = buf.find(b"\n", pos)
            if end < 0:
                pos = len(buf)
                break
            if buf[end] == 0x0D:  # "\r", maybe the first half of "\r\n"
                if end + 1 == len(buf):
                    pos = end
                    break
                nxt = end + 2 if buf[end + 1] == 0x0A else end + 1
            else:
                nxt = end + 1
            ev = self._line(buf[start:end].decode("utf-8", errors="replace"))
            if ev is not None:
                out.append(ev)
            start = pos = nxt
        if start:
            del buf[:start]  # O(1) for a bytearray's front
            pos -= start
        self._scan = pos
        self._cr = crlf and b"\r" in buf
        if len(buf) > self.max_line:
            raise ValueError(f"an event-stream line is longer than {self._limit()} "
                             "([server].max_sse_line_mb)")
        return out

    def close(self) -> list[SSEEvent]:
        """Flush what is left: a last line without its end, a last event without its blank line."""
        out: list[SSEEvent] = []
        if self._buf:
            tail = bytes(self._buf)
            self._buf.clear()
            self._scan, self._cr = 0, False
            for line in tail.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
                ev = self._line(line.decode("utf-8", errors="replace"))
                if ev is not None:
                    out.append(ev)
        ev = self._dispatch()
        if ev is not None:
            out.append(ev)
        return out

    def _limit(self) -> str:
        mb = self.max_line / (1024 * 1024)
        return f"{mb:.3g} MB" if self.max_line >= 10240 else f"{self.max_line} bytes"

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
            self._size += len(value) + 1
            if self._size > self.max_line:
                raise ValueError(f"an event-stream event is longer than {self._limit()} "
                                 "([server].max_sse_line_mb)")
        elif name == "event":
            self._event = value or None
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> SSEEvent | None:
        if self._id is not None:
            self._last_id = self._id
        event, data = self._event, self._data
        self._event, self._data, self._id, self._size = None, [], None, 0
        if not data:
            return None
        return SSEEvent(event=event, data="\n".join(data), id=self._last_id)


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
