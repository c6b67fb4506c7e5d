"""What a conversion is told besides the body (pure inputs, no guessing).

:class:`Dialect` is what one upstream (an account's provider, for one model)
accepts beyond its base API format; the provider says so
(:meth:`tokn.providers.base.Provider.dialect`) and the pipeline passes it in.
:class:`Hints` is what converting the upstream's answer back needs to know
about the client's request; the facade derives it from the request with the
same rules the request conversion used.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ToolRef:
    """Where a flattened chat tool name came from in a Responses request."""

    name: str
    namespace: str | None = None
    kind: str = "function"  # or "custom"


@dataclass(frozen=True)
class Dialect:
    """Extensions an upstream honours. The defaults are plain OpenAI chat /
    Responses / Anthropic Messages with nothing extra.

    ``cache_control``: how Anthropic-style cache breakpoints reach a chat
    upstream — ``"parts"`` as ``cache_control`` on content parts (OpenRouter),
    ``"copilot"`` as ``copilot_cache_control`` on the message (GitHub Copilot
    serving Claude models), ``""`` not at all (implicit caching: OpenAI,
    Z.ai, DeepSeek).
    ``prompt_cache_key``: takes ``prompt_cache_key`` (OpenAI chat and
    Responses, Copilot Responses); derived from the client's session.
    ``structured_output``: an Anthropic Messages upstream that takes
    ``output_config.format`` (else ``response_format`` becomes a forced tool).
    ``verbosity``: takes OpenAI's ``verbosity`` (``text.verbosity`` in Responses).
    ``reasoning_details``: takes OpenRouter's ``reasoning_details`` on assistant
    messages (signed and redacted thinking sent back to Claude models).
    """

    cache_control: str = ""
    prompt_cache_key: bool = False
    structured_output: bool = False
    verbosity: bool = False
    reasoning_details: bool = False


PLAIN = Dialect()


@dataclass(frozen=True)
class Hints:
    """``json_tool``: the forced tool standing in for ``response_format`` (its
    call becomes the message content). ``tool_names``: chat tool names that map
    back to Responses namespace / custom tools."""

    json_tool: str | None = None
    tool_names: dict[str, ToolRef] = field(default_factory=dict)


NO_HINTS = Hints()
