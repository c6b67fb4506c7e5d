"""OpenAI Responses <-> OpenAI Chat Completions: ``request`` bodies, whole
``response`` bodies and ``stream`` stages.

Not representable and dropped: ``previous_response_id`` / ``store`` (tokn is
stateless: clients must send the whole conversation), built-in tools (web
search, file search, ...), encrypted reasoning. Chat ``stop`` has no Responses
equivalent and is dropped. Reasoning reaches Responses clients as reasoning
items with a ``summary_text`` part (what Codex-style clients show).
"""
