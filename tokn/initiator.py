"""Who started this request: the user (a premium request) or the agent (a free follow-up).

GitHub Copilot bills a request sent with ``x-initiator: user`` as a premium
request; ``x-initiator: agent`` marks an automatic follow-up (a tool loop
step).  The rule, pure and format-aware:

1. an inbound ``x-initiator: user|agent`` header wins;
2. the account's ``initiator_mode`` ``always_user`` / ``always_agent`` wins next;
3. otherwise the **last non-system message** decides: an assistant or tool
   message -> ``agent``; a user turn that holds only tool results (Anthropic
   ``tool_result`` blocks, OpenAI ``role: tool``, Responses
   ``function_call_output`` items, Gemini ``functionResponse`` parts) ->
   ``agent``; any other user turn -> ``user``.

Text blocks that are nothing but a ``<system-reminder>…</system-reminder>``
(Claude Code appends those to tool-result turns) do not make a turn a user
turn.  An empty or unreadable body counts as ``user`` (never under-bill).
"""

from __future__ import annotations

from typing import Any, Literal

Initiator = Literal["user", "agent"]
MODES = ("auto", "always_user", "always_agent")

_SKIP_ROLES = frozenset({"system", "developer"})
_AGENT_ROLES = frozenset({"assistant", "tool", "function", "model"})
_TOOL_RESULT_BLOCKS = frozenset({
    "tool_result", "function_call_output", "custom_tool_call_output",
    "computer_call_output", "local_shell_call_output", "mcp_tool_result",
})
# Responses input items produced by the model (or its tools) rather than typed by a user.
_AGENT_ITEMS = frozenset({
    "function_call", "function_call_output", "custom_tool_call", "custom_tool_call_output",
    "computer_call", "computer_call_output", "local_shell_call", "local_shell_call_output",
    "reasoning", "web_search_call", "file_search_call", "image_generation_call",
    "code_interpreter_call", "mcp_call", "mcp_list_tools", "mcp_approval_request",
    "mcp_approval_response", "item_reference", "compaction",
})


def initiator_for(fmt: str, body: dict[str, Any] | None, inbound_header: str | None = None,
                  mode: str = "auto") -> Initiator:
    """``"user"`` or ``"agent"`` for a request body in format ``fmt``
    (``chat``, ``messages``, ``responses``, ``gemini``; anything else -> ``user``)."""
    header = (inbound_header or "").strip().lower()
    if header in ("user", "agent"):
        return header  # type: ignore[return-value]
    if mode == "always_user":
        return "user"
    if mode == "always_agent":
        return "agent"
    if not isinstance(body, dict):
        return "user"
    if fmt == "responses":
        return _from_responses(body.get("input"))
    if fmt in ("chat", "messages"):
        return _from_messages(body.get("messages"))
    if fmt == "gemini":
        return _from_gemini(body.get("contents"))
    return "user"


def _from_gemini(contents: Any) -> Initiator:
    """The last Gemini turn: the model's, or function responses only -> ``agent``."""
    if not isinstance(contents, list) or not contents or not isinstance(contents[-1], dict):
        return "user"
    last = contents[-1]
    if last.get("role") == "model":
        return "agent"
    parts = [p for p in last.get("parts") or [] if isinstance(p, dict)]
    answers = [p for p in parts if p.get("functionResponse") or p.get("function_response")]
    texts_ok = all(p in answers or not str(p.get("text") or "").strip() for p in parts)
    return "agent" if answers and texts_ok else "user"


def _is_reminder(block: Any) -> bool:
    if not isinstance(block, dict) or block.get("type") not in ("text", "input_text"):
        return False
    text = str(block.get("text") or "").strip()
    return not text or (text.startswith("<system-reminder>")
                        and text.endswith("</system-reminder>"))


def _only_tool_results(content: Any) -> bool:
    """True when a user turn's content is tool results (plus bare reminders) only."""
    if not isinstance(content, list) or not content:
        return False
    results = [b for b in content if isinstance(b, dict) and b.get("type") in _TOOL_RESULT_BLOCKS]
    if not results:
        return False
    return all(b in results or _is_reminder(b) for b in content)


def _from_messages(messages: Any) -> Initiator:
    if not isinstance(messages, list):
        return "user"
    for msg in reversed(messages):
        if not isinstance(msg, dict):
            continue
        role = str(msg.get("role") or "").lower()
        if role in _SKIP_ROLES:
            continue
        if role in _AGENT_ROLES:
            return "agent"
        return "agent" if _only_tool_results(msg.get("content")) else "user"
    return "user"


def _from_responses(items: Any) -> Initiator:
    if not isinstance(items, list):
        return "user"          # a plain string input is typed by the user
    for item in reversed(items):
        if isinstance(item, str):
            return "user"
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        role = str(item.get("role") or "").lower()
        if kind in (None, "message") and role:
            if role in _SKIP_ROLES:
                continue
            if role in _AGENT_ROLES:
                return "agent"
            return "agent" if _only_tool_results(item.get("content")) else "user"
        if kind in _AGENT_ITEMS or (isinstance(kind, str) and kind.endswith(("_call", "_output"))):
            return "agent"
        return "user"
    return "user"


def has_image(value: Any) -> bool:
    """True when any message/part of a body in any format carries an image
    (OpenAI ``image_url``, Responses ``input_image``, Anthropic ``image``,
    also inside tool results).  Iterative: client JSON of any depth is safe."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("type") in ("image_url", "input_image", "image"):
                return True
            stack.extend(v for k, v in item.items() if k not in ("tools", "text"))
        elif isinstance(item, list):
            stack.extend(item)
    return False
