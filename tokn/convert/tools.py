"""Tools that one format has and chat has not (pure).

**Responses tools in chat.** Chat knows only function tools, so a Responses
request's other tools become function tools with names that map back:

* a ``namespace`` tool (Codex's ``multi_agent_v1`` sub-agent tools, MCP
  servers) is flattened into one function tool per member, named
  ``<namespace>__<name>`` (Codex's own flat spelling: trailing ``_`` of the
  namespace and leading ``_`` of the name dropped; cut to 64 characters with a
  digest when longer); a call of that name goes back to the client as a
  ``function_call`` with ``namespace`` and ``name``;
* a ``custom`` (free-form) tool becomes a function tool taking one string,
  ``{"input": "..."}``; a call goes back as a ``custom_tool_call`` with that
  ``input``;
* Codex's "Responses lite" requests (its default models since 0.147) send
  ``tools: []`` and carry the tools in an ``additional_tools`` input item
  (:func:`request_tools` gathers both; a tool resent unchanged counts once); their
  ``functions`` namespace is the model's default one: its members keep their
  plain names and their calls go back without a namespace, as Codex expects;
* hosted tools the provider runs itself (``web_search``, ``file_search``,
  ``code_interpreter``, ``image_generation``, ``mcp``, ``computer_use``, ...)
  cannot run behind a chat upstream: they are left out and the request's log
  line says which (``dropped_tools``). The same holds for Anthropic's
  server and built-in tools without an ``input_schema`` (``web_search_*``,
  ``bash_*``, ``text_editor_*``, ...).

**Structured output for Anthropic.** Anthropic Messages takes a JSON schema as
``output_config.format`` (structured outputs) where the upstream supports it
(:attr:`~tokn.convert.context.Dialect.structured_output`); elsewhere a chat
``response_format`` is served by a forced tool whose input schema is the
requested schema, and its call is turned back into the message content.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

from tokn.errors import ConversionError

from .common import drop_none
from .context import Dialect, ToolRef

log = logging.getLogger("tokn.convert")

NAMESPACE_SEP = "__"
DEFAULT_NAMESPACE = "functions"  # Codex's lite form: the tools a model calls by plain name


_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


def flat_name(namespace: str, name: str) -> str:
    """``<namespace>__<name>`` as a function name chat and Anthropic accept
    (``^[a-zA-Z0-9_-]{1,64}$``): other characters become ``_`` and a longer
    name keeps its start and a digest of the whole."""
    flat = _NAME_CHARS.sub("_", f"{namespace.rstrip('_')}{NAMESPACE_SEP}{name.lstrip('_')}")
    if len(flat) <= 64:
        return flat
    return f"{flat[:55]}_{hashlib.sha256(flat.encode()).hexdigest()[:8]}"


def chat_tool_name(namespace: str | None, name: str) -> str:
    """The chat (and Anthropic) name of a Responses tool, or of a call of it."""
    if not namespace or namespace == DEFAULT_NAMESPACE:
        return name
    return flat_name(namespace, name)


def request_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A Responses request's tools: its ``tools`` and, after them, those of its
    ``additional_tools`` input items (Codex's "Responses lite" form)."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    inp = body.get("input")
    for item in inp if isinstance(inp, list) else []:
        if isinstance(item, dict) and item.get("type") == "additional_tools":
            tools += [t for t in item.get("tools") or []
                      if isinstance(t, dict) and t not in tools]  # resent in history
    return tools


def _function(name: str, description: str | None, parameters: Any,
              strict: Any = None) -> dict[str, Any]:
    return {"type": "function", "function": drop_none({
        "name": name, "description": description,
        "parameters": parameters or {"type": "object", "properties": {}}, "strict": strict})}


_CUSTOM_PARAMETERS = {"type": "object", "properties": {"input": {"type": "string"}},
                      "required": ["input"], "additionalProperties": False}


def _custom_description(tool: dict[str, Any]) -> str:
    text = tool.get("description") or ""
    fmt = tool.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "grammar" and fmt.get("definition"):
        text += (f"\n\nThe `input` string must follow this {fmt.get('syntax') or ''} grammar:\n"
                 f"{fmt['definition']}")
    return text.strip() or "Free-form input."


def responses_tools_to_chat(
    tools: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, ToolRef], list[str]]:
    """Chat function tools for a Responses tools list (:func:`request_tools`),
    the map from each non-plain chat name back to its Responses tool, and the
    tool types left out."""
    out: list[dict[str, Any]] = []
    names: dict[str, ToolRef] = {}
    dropped: list[str] = []

    def add(tool: dict[str, Any], namespace: str | None, ns_doc: str | None) -> None:
        kind, name = tool.get("type") or "function", tool.get("name") or ""
        if kind not in ("function", "custom"):
            dropped.append(f"{namespace}.{kind}" if namespace else kind)
            return
        chat_name = chat_tool_name(namespace, name)
        if namespace == DEFAULT_NAMESPACE:
            namespace = ns_doc = None
        if kind == "custom" or namespace:
            names[chat_name] = ToolRef(name, namespace, kind)
        if kind == "custom":
            description: str | None = _custom_description(tool)
            parameters: Any = _CUSTOM_PARAMETERS
        else:
            description, parameters = tool.get("description"), tool.get("parameters")
        if ns_doc:
            description = f"[{namespace}: {ns_doc}]\n{description or ''}".strip()
        out.append(_function(chat_name, description, parameters,
                             tool.get("strict") if kind == "function" else None))

    for tool in tools:
        kind = tool.get("type")
        if kind == "namespace":
            for member in tool.get("tools") or []:
                add(member, tool.get("name") or "", tool.get("description"))
        elif kind in ("function", "custom"):
            add(tool, None, None)
        else:
            dropped.append(str(kind))
    return out, names, dropped


def note_dropped(fmt: str, dropped: list[str]) -> None:
    if dropped:
        log.info("%s tools with no equivalent upstream were left out: %s", fmt,
                 ", ".join(sorted(set(dropped))))


# --- structured output for Anthropic -------------------------------------------------

_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
OUTPUT_TOOL_DESCRIPTION = ("Give the final answer by calling this tool: its input is the "
                           "response, as JSON matching the schema.")


def response_schema(chat: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """``(name, schema)`` a chat ``response_format`` asks for, None for plain text."""
    fmt = chat.get("response_format")
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        return "json_response", {"type": "object"}
    if fmt.get("type") == "json_schema":
        js = fmt.get("json_schema") or {}
        return js.get("name") or "json_response", js.get("schema") or {"type": "object"}
    return None


def output_tool_name(chat: dict[str, Any]) -> str | None:
    """The forced tool's name for a chat request with a ``response_format``: the
    schema's name when usable, never one of the request's own tools."""
    wanted = response_schema(chat)
    if wanted is None:
        return None
    name = wanted[0] if _TOOL_NAME.match(wanted[0]) else "json_response"
    taken = {(t.get("function") or {}).get("name") for t in chat.get("tools") or []}
    while name in taken:
        name = f"{name}_output"[:64]
    return name


def uses_output_tool(chat: dict[str, Any], dialect: Dialect) -> bool:
    """Whether a chat request's ``response_format`` goes to an Anthropic upstream
    as a forced tool (else as ``output_config.format``, or not at all)."""
    wanted = (chat.get("response_format") or {}).get("type")
    if wanted == "json_schema":
        return not dialect.structured_output
    return wanted == "json_object"


def output_tool(chat: dict[str, Any]) -> dict[str, Any] | None:
    """The Anthropic tool standing in for a chat ``response_format``."""
    wanted = response_schema(chat)
    if wanted is None:
        return None
    schema = wanted[1]
    if schema.get("type") not in ("object", None):
        raise ConversionError(
            "`response_format`: this upstream serves structured output through a tool, whose "
            "input must be a JSON object; a schema whose root type is "
            f"{schema.get('type')!r} cannot be served.")
    js = (chat.get("response_format") or {}).get("json_schema") or {}
    return {"name": output_tool_name(chat),
            "description": js.get("description") or OUTPUT_TOOL_DESCRIPTION,
            "input_schema": {"type": "object", **schema}}
