"""API-key providers that speak OpenAI's HTTP API: OpenAI itself, DeepSeek,
OpenRouter, and any OpenAI-compatible server (llama.cpp, vLLM, Ollama, LM Studio...).

All of them authenticate with ``Authorization: Bearer <api_key>`` (an
``openai-compatible`` account may have no key at all) and list models at
``GET {base}/models`` as ``{"data": [{"id": ...}, ...]}``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx

from tokn.config import AccountConfig
from tokn.convert import Dialect
from tokn.errors import ToknError
from tokn.providers.base import ModelInfo, Provider

KNOWN_FORMATS = frozenset({"chat", "responses", "messages", "embeddings"})


def _str_headers(value: Any) -> dict[str, str]:
    """``[accounts.settings] headers = {...}`` -> a plain ``{name: value}`` dict."""
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items() if v is not None}


def parse_formats(value: Any, where: str) -> frozenset[str]:
    """Validate ``[accounts.settings] formats``: a list of tokn format names."""
    if isinstance(value, str):
        value = [p.strip() for p in value.split(",") if p.strip()]
    if not isinstance(value, Iterable) or isinstance(value, dict | bytes):
        raise ToknError(f"{where}: settings.formats must be a list such as "
                        f'["chat", "embeddings"], got {value!r}.',
                        status=500, code="bad_config")
    formats = frozenset(str(v).strip().lower() for v in value)
    unknown = formats - KNOWN_FORMATS
    if unknown or not formats:
        raise ToknError(f"{where}: settings.formats has {sorted(unknown) or 'nothing'}; "
                        f"use some of: {', '.join(sorted(KNOWN_FORMATS))}.",
                        status=500, code="bad_config")
    return formats


class OpenAIProvider(Provider):
    """api.openai.com with an API key (``sk-...``)."""

    id = "openai"
    display_name = "OpenAI"
    vendor = "openai"
    formats = frozenset({"chat", "responses", "embeddings"})
    default_base_url = "https://api.openai.com/v1"
    env_vars = ("OPENAI_API_KEY",)

    def static_headers(self) -> dict[str, str]:
        """``OpenAI-Organization`` / ``OpenAI-Project`` from
        ``[accounts.settings] organization`` / ``project`` when set."""
        headers: dict[str, str] = {}
        if org := self.setting("organization"):
            headers["openai-organization"] = str(org)
        if project := self.setting("project"):
            headers["openai-project"] = str(project)
        return headers

    def dialect(self, fmt: str, model: str) -> Dialect:
        # platform.openai.com API reference: chat completions and Responses take
        # prompt_cache_key (cache routing; caching itself is implicit) and verbosity.
        return Dialect(prompt_cache_key=True, verbosity=True)

    def model_from_listing(self, item: dict[str, Any]) -> ModelInfo:
        """Embedding models serve only ``embeddings``; every other model the rest."""
        model_id = str(item.get("id"))
        if "embedding" in model_id:
            formats = frozenset({"embeddings"})
        else:
            formats = self.formats - {"embeddings"}
        return ModelInfo(model_id, formats=formats, raw=item)


class DeepSeekProvider(Provider):
    """api.deepseek.com: OpenAI chat completions (no ``/v1`` needed).

    DeepSeek also serves the Anthropic Messages API at
    ``https://api.deepseek.com/anthropic`` (``x-api-key``); tokn talks to the
    chat endpoint only and converts ``messages`` clients to chat.
    """

    id = "deepseek"
    display_name = "DeepSeek"
    formats = frozenset({"chat"})
    default_base_url = "https://api.deepseek.com"
    env_vars = ("DEEPSEEK_API_KEY",)

    async def describe(self) -> dict[str, Any]:
        """Account balance from ``GET {base}/user/balance`` (fails soft)."""
        try:
            headers = {**await self.credentials(), "accept": "application/json"}
            resp = await self.client.get(f"{await self.base_url()}/user/balance",
                                         headers=headers)
            if resp.status_code >= 400:
                return {"balance_error": f"GET /user/balance answered {resp.status_code}"}
            data = resp.json()
        except (httpx.HTTPError, ToknError, ValueError) as exc:
            return {"balance_error": str(exc) or type(exc).__name__}
        if not isinstance(data, dict):
            return {"balance_error": "unexpected /user/balance answer"}
        balances = [
            f"{b.get('total_balance')} {b.get('currency')}"
            for b in data.get("balance_infos") or [] if isinstance(b, dict)
        ]
        return {"available": bool(data.get("is_available")), "balance": ", ".join(balances)}


class OpenRouterProvider(Provider):
    """openrouter.ai: chat completions and the Responses API, one key for many vendors."""

    id = "openrouter"
    display_name = "OpenRouter"
    formats = frozenset({"chat", "responses"})
    default_base_url = "https://openrouter.ai/api/v1"
    env_vars = ("OPENROUTER_API_KEY",)

    def static_headers(self) -> dict[str, str]:
        """Optional app attribution: ``[accounts.settings] referer`` / ``title``."""
        headers: dict[str, str] = {}
        if referer := self.setting("referer"):
            headers["http-referer"] = str(referer)
        if title := self.setting("title"):
            headers["x-title"] = str(title)
        return headers

    def dialect(self, fmt: str, model: str) -> Dialect:
        # openrouter.ai/docs/guides/best-practices/prompt-caching: Anthropic (and
        # Gemini, Qwen) models cache at `cache_control` breakpoints on content
        # parts; usage reports prompt_tokens_details.cached_tokens and
        # cache_write_tokens; other models cache implicitly. Reasoning docs:
        # `reasoning_details` sent back keep Claude's signed / redacted thinking.
        explicit = model.lstrip("~").startswith(("anthropic/", "google/", "qwen/"))
        return Dialect(cache_control="parts" if explicit else "", reasoning_details=True)

    def model_from_listing(self, item: dict[str, Any]) -> ModelInfo:
        """OpenRouter lists ``context_length`` and ``supported_parameters``
        (``"reasoning"`` there marks a reasoning model)."""
        params = item.get("supported_parameters")
        reasoning = None
        if isinstance(params, list):
            reasoning = "reasoning" in params or "include_reasoning" in params
        context = item.get("context_length")
        return ModelInfo(
            str(item.get("id")), formats=self.formats, raw=item, reasoning=reasoning,
            context_window=context if isinstance(context, int) else None,
        )


class OpenAICompatibleProvider(Provider):
    """Any server that speaks OpenAI's API at a ``base_url`` you give.

    ``[accounts.settings] formats = ["chat", "responses", ...]`` says which
    endpoints it serves (default chat + embeddings); ``headers = {...}`` adds
    headers to every call.  The key is optional: without one no
    ``Authorization`` header is sent (a local llama.cpp usually has none).
    """

    id = "openai-compatible"
    display_name = "OpenAI-compatible"
    formats = frozenset({"chat", "embeddings"})
    default_base_url = ""

    def __init__(self, account: AccountConfig, client: httpx.AsyncClient) -> None:
        super().__init__(account, client)
        configured = account.settings.get("formats")
        if configured is not None:
            # Per-account formats shadow the class default on this instance.
            self.formats = parse_formats(configured, f"account {account.id!r}")  # type: ignore[misc]

    async def base_url(self) -> str:
        base = (self.account.base_url or self.default_base_url).rstrip("/")
        if not base:
            raise ToknError(
                f"account {self.account_id!r} ({self.account.provider}) has no base_url; "
                f"set one, e.g. `tokn config set --account {self.account_id} base_url "
                f"http://127.0.0.1:8080/v1`.",
                status=500, code="missing_base_url",
            )
        return base

    async def credentials(self, *, refresh: bool = False) -> dict[str, str]:
        key = self.account.get(self.key_field)
        return {"authorization": f"Bearer {key}"} if key else {}

    def static_headers(self) -> dict[str, str]:
        return _str_headers(self.setting("headers"))


PROVIDERS = [OpenAIProvider, DeepSeekProvider, OpenRouterProvider, OpenAICompatibleProvider]
