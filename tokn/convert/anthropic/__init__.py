"""Anthropic Messages <-> OpenAI Chat Completions: ``request`` bodies, whole
``response`` bodies and ``stream`` stages.

Non-standard chat fields used to carry what chat cannot say:
``reasoning_content`` on assistant messages / deltas (thinking text, as
DeepSeek, Z.ai and Copilot-style upstreams use; ``reasoning`` and
``reasoning_text`` are read too) and ``reasoning_signature`` (the thinking
block's signature, so it survives messages -> chat -> messages).
"""
