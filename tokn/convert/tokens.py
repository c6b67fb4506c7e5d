"""Offline token counting (an estimate, for ``/v1/messages/count_tokens`` and limits).

No tokenizer that matches Claude's ships offline on PyPI, and OpenAI's BPE
files (tiktoken) are downloaded at run time, so this is a documented estimate:

* text is split into pieces with a regex: CJK characters count 1 each; a word
  of letters counts 1 up to 7 letters, then ``ceil(len / 5)``; digit runs
  ``ceil(len / 3)`` (BPEs split numbers into groups of up to 3); each
  punctuation / symbol character 1; whitespace runs beyond one character
  ``ceil(len / 4)`` (indentation);
* each message adds ``MESSAGE_OVERHEAD``; each tool adds the estimate of its
  JSON definition plus ``TOOL_OVERHEAD``, and any tools add
  ``TOOLS_SYSTEM_OVERHEAD`` (the tool-use system prompt the API injects);
* an image counts ``IMAGE_TOKENS`` (Anthropic's figure for an image of about
  1.15 megapixels, the size images are scaled to), a PDF document ``DOCUMENT_TOKENS``.

On English prose this lands between ``len(text) / 4`` and ``len(text) / 5``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .validate import check_request

MESSAGE_OVERHEAD = 4
TOOL_OVERHEAD = 8
TOOLS_SYSTEM_OVERHEAD = 300
IMAGE_TOKENS = 1600
DOCUMENT_TOKENS = 3000
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_PIECE = re.compile(rf"[{_CJK}]|[^\W\d_{_CJK}]+|\d+|\s+|[^\w\s]|_+")


def text_tokens(text: str) -> int:
    """Estimated tokens of a piece of text."""
    n = 0
    for m in _PIECE.finditer(text or ""):
        s = m.group()
        c = s[0]
        if c.isspace():
            n += 0 if len(s) == 1 else math.ceil(len(s) / 4)
        elif c.isdigit():
            n += math.ceil(len(s) / 3)
        elif c.isalpha() and len(s) > 1:
            n += 1 if len(s) <= 7 else math.ceil(len(s) / 5)
        else:
            n += 1
    return n


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return text_tokens(content)
    n = 0
    for block in content or []:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            n += text_tokens(block.get("text") or "")
        elif kind == "thinking":
            n += text_tokens(block.get("thinking") or "")
        elif kind == "image":
            n += IMAGE_TOKENS
        elif kind == "document":
            src = block.get("source") or {}
            text = src.get("data") or "" if src.get("type") == "text" else None
            n += DOCUMENT_TOKENS if text is None else text_tokens(text)
        elif kind in ("tool_use", "server_tool_use"):
            n += text_tokens(block.get("name") or "") + text_tokens(
                json.dumps(block.get("input") or {})
            )
        elif kind == "tool_result":
            n += _content_tokens(block.get("content")) + MESSAGE_OVERHEAD
    return n


def count_tokens(body: dict[str, Any], fmt: str = "messages") -> int:
    """Estimated input tokens of a request body in format ``fmt`` (see module doc).

    Raises :class:`~tokn.errors.ConversionError` for a malformed body.
    """
    if fmt != "messages":
        from . import convert_request  # local: the package imports this module's siblings

        body = convert_request(fmt, "messages", body)
    else:
        check_request("messages", body)
    system = body.get("system")
    n = _content_tokens(system) if system else 0
    for message in body.get("messages") or []:
        n += MESSAGE_OVERHEAD + _content_tokens(message.get("content"))
    tools = body.get("tools") or []
    if tools:
        n += TOOLS_SYSTEM_OVERHEAD
        for tool in tools:
            n += TOOL_OVERHEAD + text_tokens(json.dumps(tool, ensure_ascii=False))
    return n
