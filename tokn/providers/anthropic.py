"""Anthropic's own API with an API key (``sk-ant-api...``).

Native format ``messages`` at ``POST {base}/v1/messages``, token counting at
``POST {base}/v1/messages/count_tokens``, models at ``GET {base}/v1/models``
(paginated: ``{"data": [{"type": "model", "id", "display_name", "created_at"}],
"has_more", "first_id", "last_id"}``).  Auth is ``x-api-key: <key>`` plus
``anthropic-version``; the client's own ``anthropic-version`` and
``anthropic-beta`` headers are passed on untouched.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tokn.convert import Dialect
from tokn.errors import ToknError
from tokn.providers.base import ModelInfo, Provider, header

ANTHROPIC_VERSION = "2023-06-01"
_MAX_MODEL_PAGES = 20


def version_headers(inbound: Mapping[str, str]) -> dict[str, str]:
    """``anthropic-version`` to add: none when the client sent its own."""
    return {} if header(inbound, "anthropic-version") else {"anthropic-version": ANTHROPIC_VERSION}


# Models without structured outputs (`output_config.format`); platform.claude.com
# docs, "Structured outputs": Sonnet 4.5, Opus 4.1, Haiku 4.5 and later have it.
_NO_STRUCTURED_OUTPUT = re.compile(
    r"^claude-(instant|[12]|3|(sonnet|opus)-4(-0|-2025\d{4})?$)")


def structured_outputs(model: str) -> bool:
    """Whether an Anthropic model id takes ``output_config.format``."""
    model = model.lower()
    return model.startswith("claude-") and not _NO_STRUCTURED_OUTPUT.match(model)


class AnthropicProvider(Provider):
    id = "anthropic"
    display_name = "Anthropic"
    formats = frozenset({"messages", "count_tokens"})
    default_base_url = "https://api.anthropic.com"
    paths = {
        "messages": "/v1/messages",
        "count_tokens": "/v1/messages/count_tokens",
        "models": "/v1/models",
    }
    env_vars = ("ANTHROPIC_API_KEY",)

    async def base_url(self) -> str:
        """The API origin; a pasted ``.../v1`` is tolerated (paths carry ``/v1``)."""
        base = await super().base_url()
        return base[:-3] if base.endswith("/v1") else base

    async def url_for(self, fmt: str) -> str:
        if fmt not in self.paths:
            raise ToknError(f"{self.account_id}: Anthropic serves no {fmt!r} endpoint.",
                            status=501, code="unsupported_format")
        return await super().url_for(fmt)

    async def credentials(self, *, refresh: bool = False) -> dict[str, str]:
        return {"x-api-key": self.api_key()}

    def prepare(self, fmt: str, body: dict[str, Any],
                inbound: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
        # The client's own anthropic-version / anthropic-beta are forwarded by
        # the base class; ours is added only when the client sent none.
        return body, version_headers(inbound)

    async def switch_headers(self) -> dict[str, str]:
        """Only the key: a client talking to api.anthropic.com already sends its
        own ``anthropic-version``/``anthropic-beta``, which must survive.  (The
        proxy drops the client's own ``authorization``/``x-api-key`` first.)"""
        return await self.credentials()

    async def list_models(self) -> list[ModelInfo]:
        headers = {**await self.credentials(), "accept": "application/json",
                   **version_headers({})}
        url = await self.url_for("models")
        params: dict[str, str] = {"limit": "1000"}
        out: list[ModelInfo] = []
        for _ in range(_MAX_MODEL_PAGES):
            resp = await self.client.get(url, headers=headers, params=params)
            if resp.status_code >= 400:
                raise self.listing_refused(resp.status_code, resp.text, self.paths["models"])
            data = resp.json()
            items = data.get("data", []) if isinstance(data, dict) else []
            out.extend(self.model_from_listing(i) for i in items if isinstance(i, dict))
            last = data.get("last_id") if isinstance(data, dict) else None
            if not (isinstance(data, dict) and data.get("has_more") and last):
                break
            params = {"limit": "1000", "after_id": str(last)}
        return out

    def model_from_listing(self, item: dict[str, Any]) -> ModelInfo:
        return ModelInfo(str(item.get("id")), formats=self.formats, raw=item)

    def dialect(self, fmt: str, model: str) -> Dialect:
        return Dialect(structured_output=structured_outputs(model))


PROVIDERS = [AnthropicProvider]
