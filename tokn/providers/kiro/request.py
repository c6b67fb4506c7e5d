"""OpenAI chat completions -> the body of Kiro's ``generateAssistantResponse``.

Pure logic, no I/O.  Chat completions is tokn's hub format: the pipeline turns
Anthropic Messages / Responses requests into chat first, and this module turns
chat into Kiro's ``conversationState`` (:mod:`.response` turns Kiro's event
stream back into ``chat.completion.chunk`` dicts).

Choices made here (Kiro's API has no public spec; see notes/kiro.md):

* **System prompt.**  Kiro has no system field.  All ``system``/``developer``
  messages are joined and prepended to the *first user turn that is sent*
  (the first history entry, or the current message when there is no
  history), separated by a blank line.  When old turns are dropped to fit the
  size limit the prompt moves to the new first user turn, so it is never lost.
* **Turn shape.**  Kiro wants history to start with a user turn and to
  alternate.  Consecutive same-role turns are merged (texts joined with a
  blank line, images/tool results/tool uses concatenated); a leading
  assistant turn gets a placeholder user turn before it; an assistant turn
  left without content gets placeholder text.
* **Current message.**  Must be a user turn.  If the chat ends with an
  assistant message (a "prefill"), it goes to history and a ``Continue.``
  user turn becomes the current message.
* **Tools.**  Tool results (``role: "tool"``) become ``toolResults`` on the
  user input that follows the assistant's tool calls.  Results whose
  ``tool_call_id`` does not match a tool use of the immediately preceding
  assistant turn, and all tool traffic when the request defines no tools
  (or ``tool_choice`` is ``"none"``), are rendered as plain text instead, as
  Kiro rejects them with "Improperly formed request".  Duplicate tool-use ids
  keep their first occurrence.
* **Payload size.**  Kiro refuses bodies over about 600 KB.  Oldest
  user/assistant pairs of history are dropped until the body fits; if the
  current message plus tools alone are too big, :class:`KiroPayloadTooLarge`
  (a ``ValueError``) is raised.  Use :func:`encode_request` to serialise the
  body exactly as it was measured.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import uuid
from typing import Any

from tokn.convert.validate import check_request

log = logging.getLogger(__name__)

MAX_PAYLOAD = 600_000
MAX_TOOL_NAME = 64
MAX_TOOL_DESCRIPTION = 10_000
ORIGIN = "AI_EDITOR"

PLACEHOLDER_USER = "."
PLACEHOLDER_ASSISTANT = "understood"
PLACEHOLDER_TOOL_TURN = "."
PLACEHOLDER_TOOL_RESULTS = "Tool results are attached."
PLACEHOLDER_TOOL_OUTPUT = "(no output)"
CONTINUE_TEXT = "Continue."

_IMAGE_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "gif": "gif", "webp": "webp"}


# --- tool names -------------------------------------------------------------


class ToolNameMap:
    """Reversible mapping between client tool names and Kiro-safe names.

    Names up to 64 characters are kept; longer ones become their first 55
    characters, ``_`` and 8 hex digits of their SHA-256, deterministically.
    """

    def __init__(self) -> None:
        self._to_kiro: dict[str, str] = {}
        self._from_kiro: dict[str, str] = {}

    @staticmethod
    def shorten(name: str) -> str:
        if len(name) <= MAX_TOOL_NAME:
            return name
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
        return f"{name[: MAX_TOOL_NAME - 9]}_{digest}"

    def to_kiro(self, name: str) -> str:
        """The name to send (registers the pair so replies map back)."""
        known = self._to_kiro.get(name)
        if known is not None:
            return known
        short = self.shorten(name)
        self._to_kiro[name] = short
        self._from_kiro.setdefault(short, name)
        return short

    def from_kiro(self, name: str) -> str:
        """The client's name for a name Kiro used (unknown names unchanged)."""
        return self._from_kiro.get(name, name)

    @property
    def renamed(self) -> dict[str, str]:
        """Only the pairs that differ: Kiro name -> client name."""
        return {k: v for k, v in self._from_kiro.items() if k != v}

    def __len__(self) -> int:
        return len(self._to_kiro)

    def __contains__(self, name: object) -> bool:
        return name in self._to_kiro


# --- schema / tools ---------------------------------------------------------

_NAMED_SUBSCHEMAS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def clean_schema(schema: Any) -> Any:
    """A copy of a JSON schema without the parts Kiro rejects.

    Drops ``additionalProperties`` and empty ``required`` lists, at every
    depth (``properties``, ``items``, ``anyOf``... are walked as plain
    dict/list structure).
    """
    if isinstance(schema, dict):
        out: dict[str, Any] = {}
        for key, value in schema.items():
            if key == "additionalProperties":
                continue
            if key == "required" and isinstance(value, list) and not value:
                continue
            if key in _NAMED_SUBSCHEMAS and isinstance(value, dict):
                # keys here are property / definition names, not keywords
                out[key] = {name: clean_schema(sub) for name, sub in value.items()}
            else:
                out[key] = clean_schema(value)
        return out
    if isinstance(schema, list):
        return [clean_schema(v) for v in schema]
    return schema


def _tool_description(name: str, description: Any) -> str:
    text = description.strip() if isinstance(description, str) else ""
    if not text:
        return f"Tool {name}"
    if len(text) > MAX_TOOL_DESCRIPTION:
        marker = "... (truncated)"
        text = text[: MAX_TOOL_DESCRIPTION - len(marker)] + marker
    return text


def _build_tools(tools: Any, names: ToolNameMap) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = []
    seen: set[str] = set()
    for tool in tools or []:
        if not isinstance(tool, dict):
            continue
        if tool.get("type", "function") != "function":
            continue  # built-in tools (web search...) have no Kiro equivalent
        fn = tool.get("function", tool)
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str) or not name:
            continue
        kiro_name = names.to_kiro(name)
        if kiro_name in seen:
            continue
        seen.add(kiro_name)
        params = fn.get("parameters")
        if not isinstance(params, dict) or not params:
            params = {"type": "object", "properties": {}}
        specs.append(
            {
                "toolSpecification": {
                    "name": kiro_name,
                    "description": _tool_description(name, fn.get("description")),
                    "inputSchema": {"json": clean_schema(params)},
                }
            }
        )
    return specs


# --- content ----------------------------------------------------------------


def _image_from_url(url: str) -> dict[str, Any] | None:
    """``data:image/png;base64,...`` -> Kiro image; None when unusable."""
    m = re.match(r"data:image/([a-zA-Z0-9.+-]+);base64,(.*)\Z", url.strip(), re.S)
    if not m:
        return None
    fmt = _IMAGE_FORMATS.get(m.group(1).lower())
    if fmt is None:
        return None
    data = re.sub(r"\s+", "", m.group(2))
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
    return {"format": fmt, "source": {"bytes": data}}


def _parts(content: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """Texts and Kiro images of a chat ``content`` (string or parts list)."""
    if content is None:
        return [], []
    if isinstance(content, str):
        return [content], []
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list):
        return [str(content)], []
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text") or (kind is None and "text" in part):
            text = part.get("text")
            if isinstance(text, str):
                texts.append(text)
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])
        elif kind in ("image_url", "input_image"):
            ref = part.get("image_url")
            url = ref.get("url") if isinstance(ref, dict) else ref
            image = _image_from_url(url) if isinstance(url, str) else None
            if image is not None:
                images.append(image)
            else:
                texts.append(
                    "[image omitted: Kiro accepts only inline base64 png/jpeg/gif/webp images]"
                )
        elif kind == "image" and isinstance(part.get("source"), dict):
            src = part["source"]
            media = str(src.get("media_type", "")).lower().removeprefix("image/")
            fmt = _IMAGE_FORMATS.get(media)
            if src.get("type") == "base64" and fmt and isinstance(src.get("data"), str):
                images.append({"format": fmt, "source": {"bytes": src["data"]}})
            else:
                texts.append(
                    "[image omitted: Kiro accepts only inline base64 png/jpeg/gif/webp images]"
                )
        elif kind == "file":
            texts.append("[file omitted: not supported by Kiro]")
    return texts, images


def _text_of(content: Any) -> str:
    texts, images = _parts(content)
    if images:
        texts.append(f"[{len(images)} image(s) omitted]")
    return "\n".join(t for t in texts if t)


def _parse_arguments(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        return {"raw_arguments": arguments}
    if isinstance(value, dict):
        return value
    return {"value": value}


# --- turns ------------------------------------------------------------------


class _Turn:
    __slots__ = ("role", "texts", "images", "tool_results", "tool_uses")

    def __init__(self, role: str) -> None:
        self.role = role
        self.texts: list[str] = []
        self.images: list[dict[str, Any]] = []
        self.tool_results: list[dict[str, Any]] = []  # {"id","text","error"}
        self.tool_uses: list[dict[str, Any]] = []  # {"id","name","input"}

    def merge(self, other: _Turn) -> None:
        self.texts += other.texts
        self.images += other.images
        self.tool_results += other.tool_results
        self.tool_uses += other.tool_uses

    def clone(self) -> _Turn:
        t = _Turn(self.role)
        t.texts = list(self.texts)
        t.images = list(self.images)
        t.tool_results = [dict(r) for r in self.tool_results]
        t.tool_uses = [dict(u) for u in self.tool_uses]
        return t


def _tool_result_status(msg: dict[str, Any]) -> bool:
    """True when a tool message reports an error (non-standard hints only)."""
    if msg.get("is_error") is True:
        return True
    status = msg.get("status")
    return isinstance(status, str) and status.lower() == "error"


def _collect(messages: list[Any]) -> tuple[str, list[_Turn]]:
    system: list[str] = []
    turns: list[_Turn] = []
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        role = msg.get("role")
        if role in ("system", "developer"):
            text = _text_of(msg.get("content"))
            if text.strip():
                system.append(text)
        elif role == "user":
            t = _Turn("user")
            t.texts, t.images = _parts(msg.get("content"))
            turns.append(t)
        elif role in ("tool", "function"):
            t = _Turn("user")
            call_id = msg.get("tool_call_id")
            text = _text_of(msg.get("content"))
            if isinstance(call_id, str) and call_id:
                t.tool_results.append(
                    {"id": call_id, "text": text, "error": _tool_result_status(msg)}
                )
            else:
                name = msg.get("name") or "tool"
                t.texts.append(f"[Result of {name}]\n{text}")
            turns.append(t)
        elif role == "assistant":
            t = _Turn("assistant")
            t.texts = [_text_of(msg.get("content"))]
            for call in msg.get("tool_calls") or []:
                if not isinstance(call, dict):
                    continue
                fn = call.get("function") or {}
                name = fn.get("name") if isinstance(fn, dict) else None
                if not isinstance(name, str) or not name:
                    continue
                call_id = call.get("id") or f"tooluse_{uuid.uuid4().hex[:22]}"
                t.tool_uses.append(
                    {
                        "id": str(call_id),
                        "name": name,
                        "input": _parse_arguments(fn.get("arguments")),
                    }
                )
            turns.append(t)
    return "\n\n".join(system), turns


def _merge_same_role(turns: list[_Turn]) -> list[_Turn]:
    out: list[_Turn] = []
    for t in turns:
        if out and out[-1].role == t.role:
            out[-1].merge(t)
        else:
            out.append(t)
    return out


def _tool_use_text(use: dict[str, Any]) -> str:
    return f"[Called tool {use['name']} with input {json.dumps(use['input'], ensure_ascii=False)}]"


def _tool_result_text(res: dict[str, Any]) -> str:
    label = "Error from tool call" if res.get("error") else "Result of tool call"
    return f"[{label} {res['id']}]\n{res['text'] or PLACEHOLDER_TOOL_OUTPUT}"


def _fix_tools(turns: list[_Turn], defined: set[str], names: ToolNameMap) -> None:
    """Make tool traffic acceptable to Kiro, in place (see module doc).

    ``defined`` holds the Kiro names of the tools sent with the request: a
    tool use of any other tool (or any tool use when none are defined) is
    rendered as text, and so is every tool result that does not answer a
    tool use kept in the immediately preceding assistant turn.
    """
    seen_uses: set[str] = set()
    prev_uses: set[str] = set()
    for t in turns:
        if t.role == "assistant":
            kept = []
            for use in t.tool_uses:
                if names.to_kiro(use["name"]) not in defined or use["id"] in seen_uses:
                    if use["id"] not in seen_uses:
                        t.texts.append(_tool_use_text(use))
                    continue
                seen_uses.add(use["id"])
                kept.append(use)
            t.tool_uses = kept
            prev_uses = {u["id"] for u in kept}
            continue
        kept_results = []
        answered: set[str] = set()
        for res in t.tool_results:
            if res["id"] in prev_uses and res["id"] not in answered:
                answered.add(res["id"])
                kept_results.append(res)
            else:
                t.texts.append(_tool_result_text(res))
        t.tool_results = kept_results
        prev_uses = set()


def _shape(turns: list[_Turn]) -> list[_Turn]:
    """Merge, start with user, end with user (the current message)."""
    turns = _merge_same_role(turns)
    if not turns:
        return [_Turn("user")]
    if turns[0].role == "assistant":
        turns.insert(0, _Turn("user"))
    if turns[-1].role == "assistant":
        cont = _Turn("user")
        cont.texts.append(CONTINUE_TEXT)
        turns.append(cont)
    return turns


def _join(texts: list[str]) -> str:
    return "\n\n".join(t for t in texts if t and t.strip())


def _user_message(
    t: _Turn, model_id: str, system: str | None, tools: list[dict[str, Any]] | None
) -> dict[str, Any]:
    content = _join(t.texts)
    if not content:
        content = (
            PLACEHOLDER_TOOL_RESULTS
            if t.tool_results
            else (CONTINUE_TEXT if tools is not None else PLACEHOLDER_USER)
        )
    if system:
        content = f"{system}\n\n{content}"
    msg: dict[str, Any] = {"content": content, "modelId": model_id, "origin": ORIGIN}
    if t.images:
        msg["images"] = list(t.images)
    ctx: dict[str, Any] = {}
    if tools:
        ctx["tools"] = tools
    if t.tool_results:
        ctx["toolResults"] = [
            {
                "toolUseId": r["id"],
                "content": [{"text": r["text"] or PLACEHOLDER_TOOL_OUTPUT}],
                "status": "error" if r.get("error") else "success",
            }
            for r in t.tool_results
        ]
    if ctx:
        msg["userInputMessageContext"] = ctx
    return {"userInputMessage": msg}


def _assistant_message(t: _Turn, names: ToolNameMap) -> dict[str, Any]:
    content = _join(t.texts) or (PLACEHOLDER_TOOL_TURN if t.tool_uses else PLACEHOLDER_ASSISTANT)
    msg: dict[str, Any] = {"content": content}
    if t.tool_uses:
        msg["toolUses"] = [
            {"toolUseId": u["id"], "name": names.to_kiro(u["name"]), "input": u["input"]}
            for u in t.tool_uses
        ]
    return {"assistantResponseMessage": msg}


def encode_request(payload: dict[str, Any]) -> bytes:
    """The exact request body (compact UTF-8 JSON) whose size is guarded."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class KiroPayloadTooLarge(ValueError):
    """Even the newest turn (plus tools) exceeds Kiro's request size limit."""


def build_request(
    chat_body: dict[str, Any],
    *,
    model_id: str,
    profile_arn: str | None,
    conversation_id: str | None = None,
    max_payload: int = MAX_PAYLOAD,
) -> tuple[dict[str, Any], ToolNameMap]:
    """Kiro ``generateAssistantResponse`` body for an OpenAI chat request.

    Returns the body and the tool-name map needed to translate tool names in
    the answer back (:meth:`ToolNameMap.from_kiro`).
    """
    check_request("chat", chat_body)  # a ConversionError (400) for a malformed body
    messages = chat_body["messages"]
    names = ToolNameMap()
    tools_enabled_by_choice = chat_body.get("tool_choice") != "none"
    tools = _build_tools(chat_body.get("tools"), names) if tools_enabled_by_choice else []
    defined = {t["toolSpecification"]["name"] for t in tools}
    system, raw_turns = _collect(messages)
    base_turns = _shape(raw_turns)

    def render(turns: list[_Turn]) -> dict[str, Any]:
        turns = [t.clone() for t in turns]
        if turns[0].role == "assistant":  # after trimming (defensive)
            turns.insert(0, _Turn("user"))
        _fix_tools(turns, defined, names)
        history: list[dict[str, Any]] = []
        for i, t in enumerate(turns[:-1]):
            if t.role == "user":
                history.append(_user_message(t, model_id, system if i == 0 else None, None))
            else:
                history.append(_assistant_message(t, names))
        current = _user_message(turns[-1], model_id, system if len(turns) == 1 else None, tools)
        state: dict[str, Any] = {
            "chatTriggerType": "MANUAL",
            "conversationId": conversation_id or str(uuid.uuid4()),
            "currentMessage": current,
        }
        if history:
            state["history"] = history
        body: dict[str, Any] = {"conversationState": state}
        if profile_arn:
            body["profileArn"] = profile_arn
        return body

    conversation_id = conversation_id or str(uuid.uuid4())
    turns = base_turns
    body = render(turns)
    size = original = len(encode_request(body))
    dropped = 0
    if size > max_payload and len(turns) > 1:
        # History alternates user/assistant (turns[2i], turns[2i+1] are history[2i],
        # history[2i+1]): drop the oldest pairs that cover the excess in one go, then
        # re-check (text for orphaned tool results and the moved system prompt can
        # add a little), dropping one more pair at a time.
        entry_sizes = [
            len(encode_request(h)) + 1 for h in body["conversationState"].get("history", [])
        ]
        excess, freed, pairs = size - max_payload, 0, 0
        while freed < excess and 2 * pairs + 2 <= len(entry_sizes):
            freed += entry_sizes[2 * pairs] + entry_sizes[2 * pairs + 1]
            pairs += 1
        while size > max_payload and len(turns) > 1:
            step = max(pairs, 1)
            pairs = 0
            turns = turns[2 * step :] if len(turns) > 2 * step else turns[-1:]
            dropped += 2 * step
            body = render(turns)
            size = len(encode_request(body))
    if size > max_payload:
        raise KiroPayloadTooLarge(
            f"conversation is {original} bytes, Kiro accepts about "
            f"{max_payload // 1000} KB: even with all earlier turns dropped the latest "
            f"message{' and tool definitions' if tools else ''} take {size} bytes; "
            "shorten the message (large pasted files or images) or start a new conversation"
        )
    if dropped:
        log.warning(
            "kiro: conversation was %d bytes (limit %d); dropped %d oldest history turns to fit",
            original,
            max_payload,
            dropped,
        )
    return body, names
