"""Z.ai / Zhipu BigModel (GLM models): one implementation, four provider ids.

==========================  ===============================================
provider id                 default base URL
==========================  ===============================================
``zai-coding-plan``         ``https://api.z.ai/api/coding/paas/v4``
``zai``                     ``https://api.z.ai/api/paas/v4``
``zhipuai-coding-plan``     ``https://open.bigmodel.cn/api/coding/paas/v4``
``zhipuai``                 ``https://open.bigmodel.cn/api/paas/v4``
==========================  ===============================================

OpenAI chat completions with ``Authorization: Bearer <api_key>``.  For
reasoning models tokn adds ``"thinking": {"type": "enabled", "clear_thinking":
false}`` (keep earlier turns' reasoning) unless the client sent ``thinking``
itself; see :func:`add_thinking`.

Optional ``[accounts.settings]``:

* ``anthropic_base_url = "https://api.z.ai/api/anthropic"`` (or ``"auto"``:
  ``{origin}/api/anthropic``) also serves the native ``messages`` format from
  Z.ai's Anthropic-compatible endpoint (``{that}/v1/messages``);
* ``thinking = false`` never adds ``thinking``; ``thinking = true`` adds it for
  every chat model;
* ``quota = true/false`` forces the plan-quota lookup of ``describe()`` on or
  off (on by default for the coding-plan ids).

The plan quota comes from ``GET {origin}/api/monitor/usage/quota/limit``, an
endpoint Z.ai's own console and coding plugins use (not in the public API
reference): ``{"code": 200, "success": true, "data": {"level": "pro",
"limits": [{"type": "TOKENS_LIMIT" | "TIME_LIMIT", "unit", "number",
"usage", "currentValue", "remaining", "percentage", "nextResetTime"}]}}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from tokn.config import AccountConfig
from tokn.errors import ToknError
from tokn.providers.anthropic import version_headers
from tokn.providers.base import ModelInfo, Provider

BASES: dict[str, str] = {
    "zai-coding-plan": "https://api.z.ai/api/coding/paas/v4",
    "zai": "https://api.z.ai/api/paas/v4",
    "zhipuai-coding-plan": "https://open.bigmodel.cn/api/coding/paas/v4",
    "zhipuai": "https://open.bigmodel.cn/api/paas/v4",
}
QUOTA_PATH = "/api/monitor/usage/quota/limit"
ANTHROPIC_PATH = "/api/anthropic"
THINKING: dict[str, Any] = {"type": "enabled", "clear_thinking": False}

# ``unit`` codes of the quota answer, as observed: 3 = hours (the 5-hour token
# window is unit 3, number 5), 5 = months (MCP tool calls), 6 = weeks, 1 = days.
_UNITS = {1: "d", 3: "h", 5: "mo", 6: "w"}
_KINDS = {"TOKENS_LIMIT": "tokens", "TIME_LIMIT": "mcp_calls"}


# --- pure helpers --------------------------------------------------------------------
def is_reasoning(model_id: str, model: ModelInfo | None) -> bool:
    """What the models list says when it says so; else every ``glm-*`` id."""
    if model is not None and model.reasoning is not None:
        return model.reasoning
    return model_id.strip().lower().startswith("glm-")


def add_thinking(body: dict[str, Any], model: ModelInfo | None) -> dict[str, Any]:
    """``body`` with Z.ai's ``thinking`` switch on for a reasoning model.

    Never touches a body whose client sent ``thinking`` (any value, even
    ``null``); returns a new dict, ``body`` is not modified.
    """
    if "thinking" in body:
        return body
    model_id = str(body.get("model") or (model.id if model else ""))
    if not is_reasoning(model_id, model):
        return body
    return {**body, "thinking": dict(THINKING)}


def reasoning_from_listing(item: Mapping[str, Any]) -> bool | None:
    """A ``/models`` entry's own word on reasoning, if it has one."""
    for key in ("reasoning", "thinking"):
        if isinstance(item.get(key), bool):
            return item[key]
    caps = item.get("capabilities")
    if isinstance(caps, Mapping):
        for key in ("reasoning", "thinking"):
            if isinstance(caps.get(key), bool):
                return caps[key]
    params = item.get("supported_parameters")
    if isinstance(params, list):
        return "thinking" in params or "reasoning" in params
    return None


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _num(value: Any) -> float | int | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def parse_quota(data: Any) -> dict[str, Any]:
    """The quota answer -> ``{"plan": ..., "quota": [window, ...]}``.

    Each window: ``kind`` (``tokens`` / ``mcp_calls``), ``window`` (``"5h"``,
    ``"1w"``, ``"1mo"`` or ``None``), ``used_percent``, ``used``, ``limit``,
    ``remaining`` (``None`` when not given) and ``resets_at`` (ISO 8601, UTC).
    Raises :class:`ValueError` on an error answer.
    """
    if not isinstance(data, Mapping):
        raise ValueError("quota answer is not a JSON object")
    code = data.get("code")
    if data.get("success") is False or (code is not None and code not in (0, 200)):
        raise ValueError(f"quota lookup failed: {data.get('msg') or code}")
    payload = data.get("data") if isinstance(data.get("data"), Mapping) else {}
    windows: list[dict[str, Any]] = []
    for item in payload.get("limits") or []:
        if not isinstance(item, Mapping):
            continue
        kind = str(item.get("type") or "")
        unit, number = _num(item.get("unit")), _num(item.get("number"))
        window = (f"{number}{_UNITS[unit]}"
                  if unit in _UNITS and number is not None else None)
        limit, used = _num(item.get("usage")), _num(item.get("currentValue"))
        remaining = _num(item.get("remaining"))
        percent = _num(item.get("percentage"))
        if percent is None and limit and used is not None:
            percent = round(used * 100 / limit, 1)
        reset = _num(item.get("nextResetTime"))
        resets_at = (datetime.fromtimestamp(reset / 1000, UTC).isoformat(timespec="seconds")
                     if reset else None)
        windows.append({
            "kind": _KINDS.get(kind, kind.lower()), "window": window,
            "used_percent": percent, "used": used, "limit": limit,
            "remaining": remaining, "resets_at": resets_at,
        })
    plan = payload.get("level") or payload.get("planName")
    return {"plan": str(plan) if plan else None, "quota": windows}


# --- providers ---------------------------------------------------------------------
class ZaiProvider(Provider):
    """Z.ai GLM Coding Plan (and, through subclasses, the other three ids)."""

    id = "zai-coding-plan"
    display_name = "Z.ai GLM Coding Plan"
    formats = frozenset({"chat"})
    default_base_url = BASES["zai-coding-plan"]
    env_vars = ("ZAI_API_KEY",)
    plan_quota: bool = True          # describe() looks the plan quota up by default

    def __init__(self, account: AccountConfig, client: httpx.AsyncClient) -> None:
        super().__init__(account, client)
        if self.setting("anthropic_base_url"):
            self.formats = self.formats | {"messages"}  # type: ignore[misc]

    async def base_url(self) -> str:
        default = BASES.get(self.account.provider, self.default_base_url)
        return (self.account.base_url or default).rstrip("/")

    async def anthropic_base_url(self) -> str | None:
        value = self.setting("anthropic_base_url")
        if not value:
            return None
        if str(value).lower() == "auto":
            return origin_of(await self.base_url()) + ANTHROPIC_PATH
        return str(value).rstrip("/")

    async def url_for(self, fmt: str) -> str:
        if fmt == "messages":
            base = await self.anthropic_base_url()
            if base is None:
                raise ToknError(
                    f"{self.account_id}: messages need `anthropic_base_url` in the account's "
                    f"settings (e.g. `tokn config set --account {self.account_id} "
                    f"settings.anthropic_base_url auto`).", status=501,
                    code="unsupported_format")
            return f"{base}/v1/messages"
        if fmt == "count_tokens":
            raise ToknError(f"{self.account_id}: tokn uses no count_tokens endpoint on Z.ai.",
                            status=501, code="unsupported_format")
        return await super().url_for(fmt)

    def cached_model(self, model_id: Any) -> ModelInfo | None:
        """The listed :class:`ModelInfo` for ``model_id``, without any I/O."""
        for model in self._models or ():
            if model_id in (model.id, model.upstream_id):
                return model
        return None

    def prepare(self, fmt: str, body: dict[str, Any],
                inbound: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
        if fmt == "messages":
            return body, version_headers(inbound)
        if fmt != "chat":
            return body, {}
        mode = self.setting("thinking", "auto")
        if mode is False:
            return body, {}
        if mode is True:
            return ({**body, "thinking": dict(THINKING)} if "thinking" not in body else body), {}
        return add_thinking(body, self.cached_model(body.get("model"))), {}

    def model_from_listing(self, item: dict[str, Any]) -> ModelInfo:
        return ModelInfo(str(item.get("id")), formats=self.formats, raw=item,
                         reasoning=reasoning_from_listing(item))

    async def switch_headers(self) -> dict[str, str]:
        """Bearer for the OpenAI-style paths, ``x-api-key`` too for the
        Anthropic-compatible path (clients there may use either)."""
        creds = await self.credentials()
        key = creds["authorization"].removeprefix("Bearer ")
        return {**self.static_headers(), **creds, "x-api-key": key}

    async def quota(self) -> dict[str, Any]:
        """The plan quota (raises on failure; see :func:`parse_quota`)."""
        key = self.api_key()
        url = origin_of(await self.base_url()) + QUOTA_PATH
        # Bearer first; Z.ai's own plugin sends the bare key, so try that on a refusal.
        resp = await self.client.get(url, headers={"authorization": f"Bearer {key}",
                                                   "accept": "application/json"})
        if resp.status_code in (401, 403):
            resp = await self.client.get(url, headers={"authorization": str(key),
                                                       "accept": "application/json"})
        if resp.status_code >= 400:
            raise ToknError(f"GET {QUOTA_PATH} answered {resp.status_code}",
                            status=502, code="upstream_error")
        return parse_quota(resp.json())

    async def describe(self) -> dict[str, Any]:
        """Plan and quota windows for ``tokn account show``; never raises."""
        if not self.setting("quota", self.plan_quota):
            return {}
        try:
            return await self.quota()
        except (httpx.HTTPError, ToknError, ValueError, TypeError) as exc:
            message = (exc.message if isinstance(exc, ToknError) else str(exc)) \
                or type(exc).__name__
            return {"quota_error": message}


class ZaiApiProvider(ZaiProvider):
    id = "zai"
    display_name = "Z.ai API"
    default_base_url = BASES["zai"]
    plan_quota = False


class ZhipuCodingProvider(ZaiProvider):
    id = "zhipuai-coding-plan"
    display_name = "Zhipu GLM Coding Plan"
    default_base_url = BASES["zhipuai-coding-plan"]
    env_vars = ("ZHIPUAI_API_KEY",)


class ZhipuApiProvider(ZhipuCodingProvider):
    id = "zhipuai"
    display_name = "Zhipu BigModel API"
    default_base_url = BASES["zhipuai"]
    plan_quota = False


PROVIDERS = [ZaiProvider, ZaiApiProvider, ZhipuCodingProvider, ZhipuApiProvider]
