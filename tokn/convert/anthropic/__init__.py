"""Anthropic Messages <-> OpenAI Chat Completions: ``request`` bodies, whole
``response`` bodies and ``stream`` stages.

Non-standard chat fields carry what chat cannot say, on assistant messages
and deltas: ``reasoning_content`` (thinking text, as DeepSeek, Z.ai and
Copilot-style upstreams use; ``reasoning`` and ``reasoning_text`` are read
too), ``reasoning_signature`` (the first thinking block's signature) and
``reasoning_details`` (OpenRouter's shape: every ``thinking`` block with its
signature and every ``redacted_thinking`` block, in order), so a conversation
that passed through chat goes back to Anthropic unchanged. Cache breakpoints
stay as ``cache_control`` on content parts (or on a message when the block has
no part) until the upstream's dialect places or drops them.

Not representable in chat and dropped: ``context_management``, top-level
automatic ``cache_control``, ``top_k``; server tools and Anthropic-defined
tools without an ``input_schema`` (left out with a logged notice).
"""
