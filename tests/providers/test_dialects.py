"""Each provider says what its upstream accepts beyond the plain API format
(cache breakpoints, prompt_cache_key, structured output): the converters are
told, never guess."""

from __future__ import annotations

import httpx
import pytest

from tokn.config import AccountConfig
from tokn.convert import PLAIN, Dialect
from tokn.providers import provider_class


def provider(pid: str):
    account = AccountConfig(id="a", provider=pid, fields={"api_key": "k", "github_token": "g"})
    return provider_class(pid)(account, httpx.AsyncClient())


@pytest.mark.parametrize("pid,fmt,model,dialect", [
    ("openai", "chat", "gpt-4.1", Dialect(prompt_cache_key=True, verbosity=True)),
    ("openai", "responses", "gpt-5", Dialect(prompt_cache_key=True, verbosity=True)),
    ("github-copilot", "chat", "claude-sonnet-4.5", Dialect(cache_control="copilot")),
    ("github-copilot", "chat", "gpt-4.1", PLAIN),
    ("github-copilot", "responses", "gpt-5-codex", Dialect(prompt_cache_key=True)),
    ("github-copilot", "messages", "claude-sonnet-4.5", PLAIN),
    ("openrouter", "chat", "anthropic/claude-sonnet-4.5",
     Dialect(cache_control="parts", reasoning_details=True)),
    ("openrouter", "chat", "openai/gpt-5", Dialect(reasoning_details=True)),
    ("anthropic", "messages", "claude-sonnet-4-5-20250929", Dialect(structured_output=True)),
    ("anthropic", "messages", "claude-opus-4-1", Dialect(structured_output=True)),
    ("anthropic", "messages", "claude-sonnet-4-20250514", PLAIN),
    ("anthropic", "messages", "claude-3-5-haiku-20241022", PLAIN),
    ("zai-coding-plan", "chat", "glm-4.6", PLAIN),  # implicit caching, no markers
    ("deepseek", "chat", "deepseek-chat", PLAIN),
    ("openai-compatible", "chat", "x", PLAIN),
])
def test_dialect_per_provider_and_model(pid, fmt, model, dialect):
    assert provider(pid).dialect(fmt, model) == dialect
