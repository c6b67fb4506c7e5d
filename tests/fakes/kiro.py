"""Fake Kiro backend: ``generateAssistantResponse`` as binary AWS event-stream
frames, the token refresh endpoints (social + IdC), the SSO-OIDC device flow,
the social PKCE sign-in, ``ListAvailableModels`` and ``getUsageLimits``.

Deterministic answers, like :class:`tests.fakes.llm.FakeLLM`:

* reply text is ``"echo: <content of the current user message>"``, split
  into word chunks, each its own ``assistantResponseEvent`` frame; frames are
  written to the socket cut at odd offsets (one frame spans two TCP writes,
  two frames share one) with short pauses, so the client sees partial frames;
* with tools and ``tool_trigger`` ("weather") in the message: one
  ``toolUseEvent`` call of the first tool, its input JSON split over three
  frames (the first frame also split across TCP writes), then ``stop``;
* with ``toolResults``: ``"tool said: <first result text>"``;
* then ``meteringEvent`` (``credits`` per call) and ``contextUsageEvent``.

Credentials: ``access_tokens`` are accepted bearer tokens;
``refresh_tokens`` the valid refresh tokens.  Every successful refresh
rotates: the old refresh token dies, a new ``aor-N`` / ``aoa-N`` pair is
issued (``rotate=False`` keeps the refresh token, IdC-style).

Run-time modes (``fake.mode``): ``"token_403"`` (the next chat call gets a
403 with token wording; after a refresh it succeeds), ``"rate_limit"``
(429), ``"quota"`` (402 ``MONTHLY_REQUEST_COUNT``), ``"suspended"`` (403
"temporarily is suspended"), ``"exception_mid_stream"`` (some text, then an
``exception`` frame), ``"corrupt_mid_stream"`` (a frame with a bad CRC),
``"exception_first"`` (an exception frame before any
content, ``exception_type``), ``"context_overflow"`` (400
``CONTENT_LENGTH_EXCEEDS_THRESHOLD``).
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from typing import Any
from urllib.parse import urlencode

from .base import CapturedRequest, Exchange, FakeServer
from .kiro_frames import (
    context_usage_event,
    event_frame,
    exception_frame,
    metering_event,
)

__all__ = ["DEFAULT_MODELS", "FakeKiro"]

DEFAULT_MODELS: list[dict[str, Any]] = [
    {"modelId": "auto", "modelName": "Auto", "tokenLimits": {"maxInputTokens": 200000}},
    {"modelId": "claude-sonnet-4.5", "modelName": "Claude Sonnet 4.5",
     "tokenLimits": {"maxInputTokens": 200000, "maxOutputTokens": 64000}},
    {"modelId": "claude-haiku-4.5", "modelName": "Claude Haiku 4.5",
     "tokenLimits": {"maxInputTokens": 200000}},
    {"modelId": "CLAUDE_3_7_SONNET_20250219_V1_0", "modelName": "Claude 3.7 Sonnet",
     "tokenLimits": {"maxInputTokens": 200000}},
]

REQUIRED_HEADERS = ("amz-sdk-invocation-id", "amz-sdk-request", "x-amzn-codewhisperer-optout",
                    "x-amzn-kiro-agent-mode", "x-amz-user-agent", "user-agent")


def _words(text: str) -> list[str]:
    import re

    parts = re.findall(r"\s*\S+", text)
    return parts or [text]


class FakeKiro(FakeServer):
    def __init__(self, *, access_tokens: set[str] | None = None,
                 refresh_tokens: set[str] | None = None,
                 client_id: str = "client-1", client_secret: str = "secret-1",
                 profile_arn: str = "arn:aws:codewhisperer:us-east-1:123456789012:profile/FAKE",
                 models: list[dict[str, Any]] | None = None, credits: float = 0.25,
                 context_percentage: float = 2.5, rotate: bool = True,
                 tool_trigger: str = "weather", expires_in: int = 3600,
                 chunk_pause: float = 0.002, exception_type: str = "ThrottlingException",
                 device_script: list[str] | None = None, token_casing: str = "camel",
                 refresh_delay: float = 0.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.access_tokens = set(access_tokens or {"aoa-initial"})
        self.refresh_tokens = set(refresh_tokens or {"aor-initial"})
        self.client_id = client_id
        self.client_secret = client_secret
        self.profile_arn = profile_arn
        self.models = list(models if models is not None else DEFAULT_MODELS)
        self.credits = credits
        self.context_percentage = context_percentage
        self.rotate = rotate
        self.tool_trigger = tool_trigger
        self.expires_in = expires_in
        self.chunk_pause = chunk_pause
        self.exception_type = exception_type
        self.device_script = list(device_script or ["authorization_pending", "slow_down"])
        self.token_casing = token_casing  # which /oauth/token body casing is accepted
        self.refresh_delay = refresh_delay  # seconds a refresh answer takes (after rotating)
        self.refresh_bodies: list[dict[str, Any]] = []
        self.chat_bodies: list[dict[str, Any]] = []
        self.errors: list[str] = []  # protocol violations the fake noticed
        self._counter = itertools.count(1)
        self._state_lock = threading.Lock()
        self._devices: dict[str, dict[str, Any]] = {}
        self._codes: dict[str, dict[str, str]] = {}

    # -- tokens -----------------------------------------------------------
    def _issue(self, old_refresh: str | None) -> dict[str, Any]:
        n = next(self._counter)
        access = f"aoa-{n}"
        self.access_tokens.add(access)
        refresh = old_refresh or f"aor-{n}"
        if self.rotate or old_refresh is None:
            refresh = f"aor-{n}"
            if old_refresh:
                self.refresh_tokens.discard(old_refresh)
            self.refresh_tokens.add(refresh)
        return {"accessToken": access, "refreshToken": refresh, "expiresIn": self.expires_in}

    def revoke_access_tokens(self) -> None:
        self.access_tokens.clear()

    # -- routing ----------------------------------------------------------
    def route(self, ex: Exchange) -> bool:
        req = ex.req
        path = req.path
        if req.method == "POST" and path.endswith("/generateAssistantResponse"):
            self._chat(ex)
        elif req.method == "POST" and path.endswith("/refreshToken"):
            self._social_refresh(ex)
        elif req.method == "POST" and path.endswith("/client/register"):
            self._register(ex)
        elif req.method == "POST" and path.endswith("/device_authorization"):
            self._device_authorization(ex)
        elif req.method == "POST" and path.endswith("/oauth/token"):
            self._oauth_token(ex)
        elif req.method == "POST" and path.endswith("/token"):
            self._oidc_token(ex)
        elif req.method == "GET" and path.endswith("/login"):
            self._login(ex)
        elif req.method == "GET" and path.endswith("/ListAvailableModels"):
            if self._check_auth(ex):
                ex.send_json(200, {"models": self.models,
                                   "defaultModel": {"modelId": "auto", "modelName": "Auto"}})
        elif req.method == "GET" and path.endswith("/getUsageLimits"):
            if self._check_auth(ex):
                ex.send_json(200, self.usage_limits())
        else:
            return False
        return True

    def error_payload(self, status: int, message: str | None,
                      req: CapturedRequest) -> tuple[Any, dict[str, str]]:
        return {"message": message or f"HTTP {status}", "reason": None}, {}

    def _check_auth(self, ex: Exchange) -> bool:
        token = ex.req.bearer()
        if token not in self.access_tokens:
            ex.send_json(403, {"message": "The bearer token included in the request is "
                                          "invalid.", "reason": None})
            return False
        return True

    def usage_limits(self) -> dict[str, Any]:
        return {
            "nextDateReset": 1767225600.0,
            "subscriptionInfo": {"subscriptionTitle": "KIRO FREE",
                                 "type": "Q_DEVELOPER_STANDALONE_FREE"},
            "userInfo": {"email": "dev@example.com", "userId": "u-1"},
            "usageBreakdownList": [{
                "resourceType": "CREDIT", "displayName": "Credit", "currentUsage": 12,
                "currentUsageWithPrecision": 12.5, "usageLimit": 50,
                "usageLimitWithPrecision": 50.0, "nextDateReset": 1767225600.0,
            }],
        }

    # -- refresh ----------------------------------------------------------
    def _social_refresh(self, ex: Exchange) -> None:
        body = ex.req.json if isinstance(ex.req.json, dict) else {}
        with self._state_lock:
            self.refresh_bodies.append({"kind": "social", **body})
            if set(body) != {"refreshToken"}:
                self.errors.append(f"social refresh body keys {sorted(body)}")
            token = body.get("refreshToken")
            if token not in self.refresh_tokens:
                ex.send_json(401, {"message": "Invalid refresh token", "reason": None})
                return
            answer = self._issue(token)
        answer["profileArn"] = self.profile_arn
        time.sleep(self.refresh_delay)
        ex.send_json(200, answer)

    def _oidc_token(self, ex: Exchange) -> None:
        body = ex.req.json if isinstance(ex.req.json, dict) else {}
        grant = body.get("grantType")
        if grant == "refresh_token":
            with self._state_lock:
                self.refresh_bodies.append({"kind": "idc", **body})
                if set(body) != {"clientId", "clientSecret", "grantType", "refreshToken"}:
                    self.errors.append(f"idc refresh body keys {sorted(body)}")
                if body.get("clientId") != self.client_id or \
                        body.get("clientSecret") != self.client_secret:
                    ex.send_json(401, {"error": "invalid_client",
                                       "error_description": "bad client"})
                    return
                if body.get("refreshToken") not in self.refresh_tokens:
                    ex.send_json(400, {"error": "invalid_grant",
                                       "error_description": "Invalid refresh token"})
                    return
                answer = self._issue(body["refreshToken"])
            answer["tokenType"] = "Bearer"
            ex.send_json(200, answer)
            return
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            self._device_poll(ex, body)
            return
        ex.send_json(400, {"error": "unsupported_grant_type", "error_description": str(grant)})

    # -- device flow ------------------------------------------------------
    def _register(self, ex: Exchange) -> None:
        body = ex.req.json if isinstance(ex.req.json, dict) else {}
        if body.get("clientType") != "public" or not body.get("scopes"):
            ex.send_json(400, {"error": "invalid_request"})
            return
        ex.send_json(200, {"clientId": self.client_id, "clientSecret": self.client_secret,
                           "clientIdIssuedAt": int(time.time()),
                           "clientSecretExpiresAt": int(time.time()) + 90 * 86400})

    def _device_authorization(self, ex: Exchange) -> None:
        body = ex.req.json if isinstance(ex.req.json, dict) else {}
        if body.get("clientId") != self.client_id or not body.get("startUrl"):
            ex.send_json(400, {"error": "invalid_client"})
            return
        code = secrets.token_hex(8)
        with self._state_lock:
            self._devices[code] = {"script": list(self.device_script), "start": body["startUrl"]}
        ex.send_json(200, {"deviceCode": code, "userCode": "ABCD-EFGH",
                           "verificationUri": "https://device.sso.us-east-1.amazonaws.com/",
                           "verificationUriComplete":
                               "https://device.sso.us-east-1.amazonaws.com/?user_code=ABCD-EFGH",
                           "expiresIn": 600, "interval": 1})

    def _device_poll(self, ex: Exchange, body: dict[str, Any]) -> None:
        with self._state_lock:
            dev = self._devices.get(str(body.get("deviceCode")))
            if dev is None or body.get("clientSecret") != self.client_secret:
                ex.send_json(400, {"error": "invalid_grant"})
                return
            if dev["script"]:
                step = dev["script"].pop(0)
                if step in ("authorization_pending", "slow_down", "expired_token",
                            "access_denied"):
                    ex.send_json(400, {"error": step, "error_description": None})
                    return
            del self._devices[str(body.get("deviceCode"))]
            answer = self._issue(None)
        answer["tokenType"] = "Bearer"
        ex.send_json(200, answer)

    # -- social PKCE ------------------------------------------------------
    def _login(self, ex: Exchange) -> None:
        q = {k: v[0] for k, v in ex.req.query.items()}
        if not q.get("redirect_uri") or q.get("code_challenge_method") != "S256":
            ex.send_json(400, {"message": "bad login request"})
            return
        code = secrets.token_hex(8)
        with self._state_lock:
            self._codes[code] = {"challenge": q["code_challenge"],
                                 "redirect_uri": q["redirect_uri"]}
        location = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q.get("state", "")})
        ex.send(302, b"", "text/plain", headers={"Location": location})

    def _oauth_token(self, ex: Exchange) -> None:
        import base64
        import hashlib

        body = ex.req.json if isinstance(ex.req.json, dict) else {}
        camel = "codeVerifier" in body
        if (self.token_casing == "camel") != camel:
            ex.send_json(400, {"message": "missing required fields"})
            return
        verifier = body.get("codeVerifier") or body.get("code_verifier") or ""
        redirect = body.get("redirectUri") or body.get("redirect_uri")
        with self._state_lock:
            grant = self._codes.get(str(body.get("code")))
            challenge = base64.urlsafe_b64encode(
                hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
            if grant is None or grant["challenge"] != challenge or \
                    grant["redirect_uri"] != redirect:
                ex.send_json(400, {"message": "invalid code"})
                return
            del self._codes[str(body.get("code"))]
            answer = self._issue(None)
        answer["profileArn"] = self.profile_arn
        ex.send_json(200, answer)

    # -- chat -------------------------------------------------------------
    def _validate(self, req: CapturedRequest, body: Any) -> str | None:
        missing = [h for h in REQUIRED_HEADERS if h not in req.headers]
        if missing:
            return f"missing headers {missing}"
        if not isinstance(body, dict) or "conversationState" not in body:
            return "no conversationState"
        st = body["conversationState"]
        cur = (st.get("currentMessage") or {}).get("userInputMessage")
        if not isinstance(cur, dict) or not cur.get("content"):
            return "current message must be a user turn with content"
        history = st.get("history") or []
        expect = "userInputMessage"
        for entry in history:
            if expect not in entry:
                return "history does not alternate"
            expect = ("assistantResponseMessage" if expect == "userInputMessage"
                      else "userInputMessage")
        if history and expect != "userInputMessage":
            return "history ends with a user turn"
        ctx = cur.get("userInputMessageContext") or {}
        if ctx.get("toolResults") and not ctx.get("tools"):
            return "toolResults without tools"
        return None

    def _chat(self, ex: Exchange) -> None:
        req = ex.req
        body = req.json
        if req.bearer() not in self.access_tokens:
            ex.send_json(403, {"message": "The bearer token included in the request is invalid.",
                               "reason": None})
            return
        mode = self.mode
        if mode == "token_403":
            self.mode = None
            self.access_tokens.discard(req.bearer())
            ex.send_json(403, {"message": "The bearer token included in the request is invalid.",
                               "reason": None})
            return
        if mode == "rate_limit":
            ex.send_json(429, {"message": "Too many requests, please wait before trying again.",
                               "reason": None}, headers={"Retry-After": "7"})
            return
        if mode == "quota":
            ex.send_json(402, {"message": "You have reached the limit for this month.",
                               "reason": "MONTHLY_REQUEST_COUNT"})
            return
        if mode == "suspended":
            ex.send_json(403, {"message": "Your User ID (u-1) temporarily is suspended.",
                               "reason": None})
            return
        if mode == "context_overflow":
            ex.send_json(400, {"message": "Input is too long.",
                               "reason": "CONTENT_LENGTH_EXCEEDS_THRESHOLD"})
            return
        problem = self._validate(req, body)
        if problem:
            self.errors.append(problem)
            ex.send_json(400, {"message": f"Improperly formed request. ({problem})",
                               "reason": None})
            return
        self.chat_bodies.append(body)
        cur = body["conversationState"]["currentMessage"]["userInputMessage"]
        model = cur.get("modelId")
        ids = {m["modelId"] for m in self.models}
        if model not in ids:
            ex.send_json(400, {"message": "Invalid model. Please select a different model "
                                          "to continue.", "reason": "INVALID_MODEL_ID"})
            return
        ctx = cur.get("userInputMessageContext") or {}
        tools = ctx.get("tools") or []
        results = ctx.get("toolResults") or []
        text = cur["content"]
        req.meta.update(model=model, tools=len(tools), results=len(results))
        frames: list[bytes] = []
        if mode == "exception_first":
            frames.append(exception_frame(self.exception_type, "Rate exceeded"))
        elif results:
            reply = "tool said: " + "".join(c.get("text", "") for c in results[0]["content"])
            frames += [event_frame("assistantResponseEvent", {"content": w})
                       for w in _words(reply)]
        elif tools and self.tool_trigger.lower() in text.lower():
            name = tools[0]["toolSpecification"]["name"]
            tid = "tooluse_" + secrets.token_hex(8)
            args = json.dumps({"location": "Paris", "unit": "celsius"})
            frames.append(event_frame("assistantResponseEvent",
                                      {"content": "Let me check."}))
            frames.append(event_frame("toolUseEvent", {"name": name, "toolUseId": tid}))
            a, b = len(args) // 3, 2 * len(args) // 3
            for frag in (args[:a], args[a:b], args[b:]):
                frames.append(event_frame("toolUseEvent", {"name": name, "toolUseId": tid,
                                                           "input": frag}))
            frames.append(event_frame("toolUseEvent", {"name": name, "toolUseId": tid,
                                                       "stop": True}))
        else:
            words = _words("echo: " + text)
            for i, w in enumerate(words):
                frames.append(event_frame("assistantResponseEvent", {"content": w}))
                if mode == "corrupt_mid_stream" and i == 1:
                    bad = bytearray(event_frame("assistantResponseEvent", {"content": "x"}))
                    bad[-6] ^= 0xFF  # payload byte flipped: the message CRC no longer fits
                    frames.append(bytes(bad))
                    break
                if mode == "exception_mid_stream" and i == 1:
                    frames.append(exception_frame("InternalServerException",
                                                  "Encountered an unexpected error"))
                    break
        if mode not in ("exception_mid_stream", "exception_first", "corrupt_mid_stream"):
            frames.append(metering_event(self.credits))
            frames.append(context_usage_event(self.context_percentage))
        ex.start_stream(200, "application/vnd.amazon.eventstream",
                        headers={"x-amzn-RequestId": secrets.token_hex(8)})
        self._write_split(ex, frames)
        ex.end_stream()

    def _write_split(self, ex: Exchange, frames: list[bytes]) -> None:
        """Write frames cut at odd offsets: frame boundaries never line up with writes."""
        data = b"".join(frames)
        cuts = [len(frames[0]) // 2] if frames else []
        pos = 0
        for f in frames:
            pos += len(f)
            cuts.append(pos + 5)  # 5 bytes of the next frame ride along
        cuts = sorted({c for c in cuts if 0 < c < len(data)})
        start = 0
        for c in [*cuts, len(data)]:
            ex.write(data[start:c])
            start = c
            if self.chunk_pause:
                time.sleep(self.chunk_pause)
