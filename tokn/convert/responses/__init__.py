"""OpenAI Responses <-> OpenAI Chat Completions: ``request`` bodies, whole
``response`` bodies and ``stream`` stages.

Namespace and custom tools become chat function tools whose calls map back
(:mod:`tokn.convert.tools`); hosted tools (web search, file search, ...) are
left out with a logged notice. Not representable and dropped:
``previous_response_id`` / ``store`` (tokn is stateless: clients must send the
whole conversation), ``include``, ``client_metadata``, encrypted reasoning.
Chat ``stop`` has no Responses equivalent and is dropped. Reasoning reaches
Responses clients as reasoning items with a ``summary_text`` part (what
Codex-style clients show).
"""
