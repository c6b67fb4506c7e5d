"""Fake Google upstreams: the OAuth token endpoint, the Code Assist API the Gemini
CLI uses after "Login with Google", and the public Gemini API (API keys).

Wire facts (sources: Gemini CLI 0.61 bundle -- ``code_assist/oauth2.ts``,
``server.ts``, ``setup.ts``, ``converter.ts``, ``googleQuotaErrors.ts``;
``google.genai`` 2.x; the Gemini API reference; errors users posted in
google-gemini/gemini-cli#29425 and googleapis/python-genai#2114):

* ``POST /token`` (oauth2.googleapis.com), form-encoded. ``refresh_token``
  grant -> ``{"access_token", "expires_in": 3599, "scope", "token_type":
  "Bearer"}`` (no new refresh token, no ``id_token``); a dead refresh token ->
  400 ``{"error": "invalid_grant", "error_description": "Token has been
  expired or revoked."}``; a wrong client -> 401 ``invalid_client``.
  ``authorization_code`` grant (PKCE) -> the same plus ``refresh_token``.
  ``GET /tokeninfo?access_token=`` and ``GET /oauth2/v2/userinfo`` (the CLI
  calls both when it loads cached credentials).
* Code Assist: ``POST /v1internal:{method}`` with a Bearer token.
  ``loadCodeAssist`` -> ``currentTier`` + ``cloudaicompanionProject`` once
  onboarded, else only ``allowedTiers`` (free tier is the default);
  ``onboardUser`` -> a long-running operation ``{"name", "done": false}``
  until ``onboard_polls`` polls (``GET /v1internal/{name}``, or the CLI's
  older repeated ``onboardUser``) have passed, then ``{"done": true,
  "response": {"cloudaicompanionProject": {"id", "name"}}}``.
  ``generateContent`` / ``streamGenerateContent?alt=sse`` take ``{"model",
  "project", "user_prompt_id", "request"}`` and answer ``{"response",
  "traceId"}`` (per SSE event too); ``countTokens`` takes ``{"request":
  {"model": "models/x", "contents"}}`` -> ``{"totalTokens"}``. A spent quota
  is 429 RESOURCE_EXHAUSTED with ``ErrorInfo`` (reason ``QUOTA_EXHAUSTED``,
  domain ``cloudcode-pa.googleapis.com``, metadata ``quotaResetDelay`` /
  ``quotaResetTimeStamp`` / ``model``) and ``RetryInfo``.
* Public API: ``/v1beta/models``, ``/v1beta/models/{m}:generateContent``,
  ``:streamGenerateContent?alt=sse`` (SSE; without ``alt=sse`` a JSON array),
  ``:countTokens``; key in ``x-goog-api-key`` or ``?key=``. No key -> 403
  PERMISSION_DENIED; a wrong key -> 400 INVALID_ARGUMENT ``API_KEY_INVALID``;
  an unknown model -> 404; quota -> 429 with ``QuotaFailure``, ``Help`` and
  ``RetryInfo`` and "Please retry in Xs." in the message.

SSE events end with CRLF CRLF as Google's do; answers come from ``gemini_brain``.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from typing import Any

from .base import CapturedRequest, Exchange, FakeServer
from .gemini_brain import REQUEST_FIELDS, RPC, BadRequest, GeminiBrain, google_error, proto_bytes

__all__ = ["GEMINI_CLI_CLIENT_ID", "GEMINI_CLI_CLIENT_SECRET", "FakeCodeAssist",
           "FakeGeminiAPI", "FakeGoogleOAuth"]

# Public values from the Gemini CLI's source (packages/core/src/code_assist/oauth2.ts).
GEMINI_CLI_CLIENT_ID = "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com"
GEMINI_CLI_CLIENT_SECRET = "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"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform "
          "https://www.googleapis.com/auth/userinfo.email "
          "https://www.googleapis.com/auth/userinfo.profile")
DEFAULT_MODELS = [
    {"name": "models/gemini-2.5-flash", "version": "001", "displayName": "Gemini 2.5 Flash",
     "inputTokenLimit": 1048576, "outputTokenLimit": 65536, "thinking": True,
     "supportedGenerationMethods": ["generateContent", "countTokens", "createCachedContent",
                                    "batchGenerateContent"]},
    {"name": "models/gemini-2.5-pro", "version": "2.5", "displayName": "Gemini 2.5 Pro",
     "inputTokenLimit": 1048576, "outputTokenLimit": 65536, "thinking": True,
     "supportedGenerationMethods": ["generateContent", "countTokens"]},
    {"name": "models/gemini-3-pro-preview", "version": "3-pro-preview-11-2025",
     "displayName": "Gemini 3 Pro Preview", "inputTokenLimit": 1048576,
     "outputTokenLimit": 65536, "thinking": True,
     "supportedGenerationMethods": ["generateContent", "countTokens"]},
    {"name": "models/gemini-3.1-pro-preview", "version": "3.1-pro-preview-02-2026",
     "displayName": "Gemini 3.1 Pro Preview", "inputTokenLimit": 1048576,
     "outputTokenLimit": 65536, "thinking": True,
     "supportedGenerationMethods": ["generateContent", "countTokens"]},
    {"name": "models/gemini-3-flash-preview", "version": "3-flash-preview-12-2025",
     "displayName": "Gemini 3 Flash Preview", "inputTokenLimit": 1048576,
     "outputTokenLimit": 65536, "thinking": True,
     "supportedGenerationMethods": ["generateContent", "countTokens"]},
    {"name": "models/text-embedding-004", "version": "004", "displayName": "Text Embedding 004",
     "inputTokenLimit": 2048, "outputTokenLimit": 1,
     "supportedGenerationMethods": ["embedContent"]},
]


def _duration(seconds: float) -> str:  # Google's duration strings: "7984.5s"
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


def _send_sse(ex: Exchange, events: list[dict[str, Any]]) -> None:
    ex.start_stream(headers={"x-content-type-options": "nosniff"})
    for event in events:
        ex.write("data: " + json.dumps(event) + "\r\n\r\n")
    ex.end_stream()


class _GoogleFake(FakeServer):
    request_fields: set[str] = REQUEST_FIELDS
    always_sse = False  # Code Assist answers SSE whatever the query says

    def __init__(self, *, brain: GeminiBrain | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.brain = brain or GeminiBrain()
        self.quota: dict[str, Any] | None = None  # set by exhaust_quota()

    def restore_quota(self) -> None:
        self.quota = None

    def error_payload(self, status: int, message: str | None,
                      req: CapturedRequest) -> tuple[Any, dict[str, str]]:
        return google_error(status, message or f"HTTP {status}"), {}

    def _error(self, ex: Exchange, status: int, message: str,
               details: list[dict[str, Any]] | None = None) -> None:
        ex.send_json(status, google_error(status, message, details))

    def _answer(self, ex: Exchange, body: dict[str, Any], model: str, stream: bool,
                wrap: Any) -> None:
        """Validate, plan and send a generate answer; ``wrap`` shapes each JSON object."""
        try:
            self.brain.validate(body, model, allowed=self.request_fields)
        except BadRequest as exc:
            self._error(ex, 400, exc.message)
            return
        plan = self.brain.plan(body)
        ex.req.meta.update(model=model, stream=stream, plan=plan, images=_images(body))
        rid = secrets.token_urlsafe(16)
        if not stream:
            ex.send_json(200, wrap(self.brain.response(plan, model, rid)))
            return
        chunks = [wrap(c) for c in self.brain.chunks(plan, model, rid)]
        if "alt=sse" in ex.req.raw_query or self.always_sse:
            _send_sse(ex, chunks)
        else:
            ex.start_stream(content_type="application/json; charset=UTF-8")
            ex.write("[" + ",\r\n".join(json.dumps(c) for c in chunks) + "]")
            ex.end_stream()


def _images(body: dict[str, Any]) -> list[tuple[str, int]]:
    out = []
    for content in body.get("contents") or []:
        for part in content.get("parts") or []:
            blob = part.get("inlineData") or part.get("inline_data")
            if isinstance(blob, dict):
                mime = blob.get("mimeType") or blob.get("mime_type") or ""
                out.append((mime, len(proto_bytes(blob.get("data") or ""))))
    return out


# =============================================================================
# OAuth
# =============================================================================


class FakeGoogleOAuth(FakeServer):
    """oauth2.googleapis.com's ``/token`` and ``/tokeninfo``, plus ``/oauth2/v2/userinfo``.

    ``refresh_tokens``: valid refresh tokens. ``expires_in``: access-token
    lifetime. :meth:`issue_code` mints an authorization code;
    :meth:`expire_access_tokens` ends every issued access token now;
    :meth:`is_valid` tells the Code Assist fake whether a token is live.
    """

    def __init__(self, *, refresh_tokens: set[str] | None = None,
                 client_id: str = GEMINI_CLI_CLIENT_ID,
                 client_secret: str = GEMINI_CLI_CLIENT_SECRET, expires_in: int = 3599,
                 email: str = "dev@example.com", **kw: Any) -> None:
        super().__init__(**kw)
        self.refresh_tokens = set(refresh_tokens or {"1//0fake-refresh-token"})
        self.client_id, self.client_secret = client_id, client_secret
        self.expires_in = expires_in
        self.email = email
        self.access: dict[str, float] = {}  # access token -> expiry (time.time())
        self.codes: dict[str, str] = {}  # code -> redirect_uri
        self._n = itertools.count(1)
        self._lock = threading.Lock()

    def issue_access_token(self) -> str:
        token = f"ya29.fake-{next(self._n)}-{secrets.token_urlsafe(12)}"
        with self._lock:
            self.access[token] = time.time() + self.expires_in
        return token

    def issue_code(self, redirect_uri: str = "http://127.0.0.1/oauth2callback") -> str:
        code = "4/0fake-" + secrets.token_urlsafe(12)
        self.codes[code] = redirect_uri
        return code

    def expire_access_tokens(self) -> None:
        with self._lock:
            self.access = dict.fromkeys(self.access, 0.0)

    def is_valid(self, token: str | None) -> bool:
        with self._lock:
            return bool(token) and self.access.get(token or "", 0.0) > time.time()

    def is_expired(self, token: str | None) -> bool:
        with self._lock:
            return token in self.access and self.access[token or ""] <= time.time()

    def route(self, ex: Exchange) -> bool:
        req = ex.req
        if req.method == "POST" and req.path == "/token":
            self._token(ex)
        elif req.method in ("GET", "POST") and req.path == "/tokeninfo":
            self._tokeninfo(ex)
        elif req.method == "GET" and req.path == "/oauth2/v2/userinfo":
            if not self.is_valid(req.bearer()):
                ex.send_json(401, google_error(401, "Request is missing required authentication "
                                                    "credential. Expected OAuth 2 access token, "
                                                    "login cookie or other valid authentication "
                                                    "credential."))
            else:
                ex.send_json(200, {"id": "108236734527363819002", "email": self.email,
                                   "verified_email": True, "picture": ""})
        else:
            return False
        return True

    def _oauth_error(self, ex: Exchange, status: int, error: str, description: str) -> None:
        ex.send_json(status, {"error": error, "error_description": description})

    def _token(self, ex: Exchange) -> None:
        form = ex.req.form or {k: str(v) for k, v in (ex.req.json or {}).items()}
        grant = form.get("grant_type")
        if (form.get("client_id"), form.get("client_secret")) != (self.client_id,
                                                                   self.client_secret):
            self._oauth_error(ex, 401, "invalid_client", "The OAuth client was not found.")
            return
        answer: dict[str, Any] = {"access_token": "", "expires_in": self.expires_in,
                                  "scope": SCOPES, "token_type": "Bearer"}
        if grant == "refresh_token":
            if not form.get("refresh_token"):
                self._oauth_error(ex, 400, "invalid_request", "Missing required parameter: "
                                                              "refresh_token")
                return
            if form["refresh_token"] not in self.refresh_tokens:
                self._oauth_error(ex, 400, "invalid_grant", "Token has been expired or revoked.")
                return
        elif grant == "authorization_code":
            if self.codes.pop(form.get("code") or "", None) is None:
                self._oauth_error(ex, 400, "invalid_grant", "Malformed auth code.")
                return
            refresh = "1//0fake-" + secrets.token_urlsafe(16)
            self.refresh_tokens.add(refresh)
            answer["refresh_token"] = refresh
        else:
            self._oauth_error(ex, 400, "unsupported_grant_type",
                              f"Invalid grant_type: {grant or ''}")
            return
        answer["access_token"] = self.issue_access_token()
        ex.send_json(200, answer)

    def _tokeninfo(self, ex: Exchange) -> None:
        token = ex.req.params().get("access_token")
        if not self.is_valid(token):
            self._oauth_error(ex, 400, "invalid_token", "Invalid Value")
            return
        left = int(self.access[token] - time.time())
        ex.send_json(200, {"azp": self.client_id, "aud": self.client_id,
                           "sub": "108236734527363819002", "scope": SCOPES,
                           "exp": str(int(self.access[token])), "expires_in": str(left),
                           "email": self.email, "email_verified": "true",
                           "access_type": "offline"})


# =============================================================================
# Code Assist
# =============================================================================

_FREE = {"id": "free-tier", "name": "Gemini Code Assist for individuals",
         "description": "Gemini-powered code suggestions and chat in multiple IDEs",
         "userDefinedCloudaicompanionProject": False}
_STANDARD = {"id": "standard-tier", "name": "Gemini Code Assist",
             "description": "Unlimited coding assistant with the most powerful Gemini models",
             "userDefinedCloudaicompanionProject": True}
_INFO_METHODS = {"listExperiments": {"experimentIds": [], "flags": []},
                 "recordCodeAssistMetrics": {}, "fetchAdminControls": {},
                 "getCodeAssistGlobalUserSetting": {"freeTierDataCollectionOptin": False},
                 "setCodeAssistGlobalUserSetting": {}}
CA_REQUEST_FIELDS = {"contents", "systemInstruction", "cachedContent", "tools", "toolConfig",
                     "labels", "safetySettings", "generationConfig", "session_id"}


class FakeCodeAssist(_GoogleFake):
    """cloudcode-pa.googleapis.com ``/v1internal`` as the Gemini CLI uses it.

    ``oauth``: a :class:`FakeGoogleOAuth` whose live access tokens are
    accepted (else ``access_tokens``). ``onboarded``: whether the account
    already has a tier and project; ``tier`` the tier it gets; ``project``
    the managed project; ``onboard_polls`` operation polls before ``done``.
    :meth:`exhaust_quota` makes generate calls fail with Code Assist's 429.
    """

    request_fields = CA_REQUEST_FIELDS
    always_sse = True

    def __init__(self, *, oauth: FakeGoogleOAuth | None = None,
                 access_tokens: set[str] | None = None, onboarded: bool = True,
                 tier: str = "free-tier", project: str = "tokn-fake-project-4f2a",
                 onboard_polls: int = 1,
                 models: tuple[str, ...] = ("gemini-2.5-pro", "gemini-2.5-flash",
                                            "gemini-3-pro-preview", "gemini-3.1-pro-preview",
                                            "gemini-3-flash-preview"),
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.oauth = oauth
        self.access_tokens = set(access_tokens or set())
        self.onboarded, self.tier, self.project = onboarded, tier, project
        self.onboard_polls = onboard_polls
        self.models = set(models)
        self.operations: dict[str, int] = {}  # operation name -> polls left

    def exhaust_quota(self, *, model: str | None = None, reset_in: float = 33740.91,
                      reason: str = "QUOTA_EXHAUSTED") -> None:
        """Generate calls (for ``model``, or all) get 429 until :meth:`restore_quota`."""
        self.quota = {"model": model, "reset_in": reset_in, "reason": reason}

    def route(self, ex: Exchange) -> bool:
        req = ex.req
        if req.path.startswith("/v1internal/operations/") and req.method == "GET":
            if self._auth(ex):
                self._operation(ex, req.path.removeprefix("/v1internal/"))
            return True
        if req.method != "POST" or not req.path.startswith("/v1internal:"):
            return False
        method = req.path.removeprefix("/v1internal:")
        req.meta["method"] = method
        if not self._auth(ex):
            return True
        body = req.json if isinstance(req.json, dict) else {}
        if method == "loadCodeAssist":
            self._load(ex, body)
        elif method == "onboardUser":
            self._onboard(ex, body)
        elif method in ("generateContent", "streamGenerateContent"):
            self._generate(ex, body, method == "streamGenerateContent")
        elif method == "countTokens":
            self._count(ex, body)
        elif method == "retrieveUserQuota":
            ex.send_json(200, {"buckets": [{"remainingFraction": 1, "tokenType": "REQUESTS",
                                            "modelId": m, "resetTime": "2030-01-01T00:00:00Z"}
                                           for m in sorted(self.models)]})
        elif method in _INFO_METHODS:
            ex.send_json(200, _INFO_METHODS[method])
        else:
            return False
        return True

    def _auth(self, ex: Exchange) -> bool:
        token = ex.req.bearer()
        live = token in self.access_tokens or (self.oauth is not None
                                               and self.oauth.is_valid(token))
        if live:
            return True
        expired = self.oauth is not None and self.oauth.is_expired(token)
        reason = "ACCESS_TOKEN_EXPIRED" if expired else (
            "CREDENTIALS_MISSING" if not token else "ACCESS_TOKEN_TYPE_UNSUPPORTED")
        self._error(ex, 401, "Request had invalid authentication credentials. Expected OAuth 2 "
                             "access token, login cookie or other valid authentication "
                             "credential. See https://developers.google.com/identity/sign-in/"
                             "web/devconsole-project.",
                    [{"@type": RPC + "ErrorInfo", "reason": reason, "domain": "googleapis.com",
                      "metadata": {"service": "cloudcode-pa.googleapis.com",
                                   "method": "google.internal.cloud.code.v1internal."
                                             f"CloudCode.{ex.req.meta.get('method', '')}"}}])
        return False

    def _tier(self) -> dict[str, Any]:
        return {**(_FREE if self.tier == "free-tier" else _STANDARD), "isDefault": None}

    def _load(self, ex: Exchange, body: dict[str, Any]) -> None:
        allowed = [{**_FREE, "isDefault": True}, _STANDARD]
        if not self.onboarded:
            ex.send_json(200, {"allowedTiers": allowed, "gcpManaged": False})
            return
        tier = {k: v for k, v in self._tier().items() if v is not None}
        project = self.project if self.tier == "free-tier" else (
            body.get("cloudaicompanionProject") or self.project)
        ex.send_json(200, {"currentTier": tier, "allowedTiers": allowed,
                           "cloudaicompanionProject": project, "gcpManaged": False})

    def _operation_body(self, name: str) -> dict[str, Any]:
        left = self.operations.get(name, 0)
        if left > 0:
            self.operations[name] = left - 1
            return {"name": name, "done": False}
        self.onboarded = True
        return {"name": name, "done": True, "response": {
            "@type": "type.googleapis.com/google.internal.cloud.code.v1internal."
                     "OnboardUserResponse",
            "cloudaicompanionProject": {"id": self.project, "name": self.project,
                                        "projectNumber": "0"}}}

    def _onboard(self, ex: Exchange, body: dict[str, Any]) -> None:
        tier = body.get("tierId")
        if tier not in ("free-tier", "standard-tier", "legacy-tier"):
            self._error(ex, 400, f"Invalid tier id: {tier}")
            return
        if tier != "free-tier":
            if not body.get("cloudaicompanionProject"):
                self._error(ex, 400, "Project id is required for this tier.")
                return
            self.project = body["cloudaicompanionProject"]
        self.tier = tier
        # the CLI polls GET /v1internal/{name}; older versions re-POSTed onboardUser
        name = next(iter(self.operations), f"operations/onboard-{secrets.token_hex(6)}")
        self.operations.setdefault(name, self.onboard_polls)
        ex.send_json(200, self._operation_body(name))

    def _operation(self, ex: Exchange, name: str) -> None:
        if name not in self.operations:
            self._error(ex, 404, "Requested entity was not found.")
            return
        ex.send_json(200, self._operation_body(name))

    def _envelope(self, ex: Exchange, body: dict[str, Any]) -> str | None:
        """The model of a generate envelope, or None after answering an error."""
        unknown = set(body) - {"model", "project", "user_prompt_id", "request",
                               "enabled_credit_types"}
        if unknown:
            name = sorted(unknown)[0]
            self._error(ex, 400, f'Invalid JSON payload received. Unknown name "{name}": Cannot '
                                 "find field.")
            return None
        model = str(body.get("model") or "")
        if not self.onboarded or body.get("project") != self.project:
            project = body.get("project") or ""
            self._error(ex, 403, "Permission 'cloudaicompanion.companions.generateChat' denied on "
                                 f"resource '//cloudaicompanion.googleapis.com/projects/{project}/"
                                 "locations/global' (or it may not exist).")
            return None
        if model not in self.models:
            self._error(ex, 404, "Requested entity was not found.")
            return None
        q = self.quota
        if q is not None and q["model"] in (None, model):
            reset = q["reset_in"]
            h, rest = divmod(int(reset), 3600)
            m, s = divmod(rest, 60)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + reset))
            self._error(ex, 429, "You have exhausted your capacity on this model. Your quota will "
                                 f"reset after {h}h{m}m{s}s.",
                        [{"@type": RPC + "ErrorInfo", "reason": q["reason"],
                          "domain": "cloudcode-pa.googleapis.com",
                          "metadata": {"uiMessage": "true", "model": model,
                                       "quotaResetDelay": _duration(reset),
                                       "quotaResetTimeStamp": stamp}},
                         {"@type": RPC + "RetryInfo", "retryDelay": _duration(reset)}])
            return None
        return model

    def _generate(self, ex: Exchange, body: dict[str, Any], stream: bool) -> None:
        model = self._envelope(ex, body)
        if model is None:
            return
        trace = secrets.token_hex(8)
        ex.req.meta["user_prompt_id"] = body.get("user_prompt_id")
        self._answer(ex, body.get("request") or {}, model, stream,
                     lambda r: {"response": {k: v for k, v in r.items() if k != "responseId"},
                                "traceId": trace})

    def _count(self, ex: Exchange, body: dict[str, Any]) -> None:
        request = body.get("request") or {}
        contents = request.get("contents")
        if not str(request.get("model") or "").startswith("models/") or contents is None:
            self._error(ex, 400, "* CountTokensRequest.model: model is required in the format "
                                 "models/{model}\n")
            return
        plan = self.brain.plan({"contents": contents})
        ex.send_json(200, {"totalTokens": plan.prompt_tokens})


# =============================================================================
# Public Gemini API
# =============================================================================


class FakeGeminiAPI(_GoogleFake):
    """generativelanguage.googleapis.com (``v1beta`` and ``v1``) with API keys.

    ``api_keys``: accepted keys; ``models``: ``models.list`` entries.
    :meth:`exhaust_quota` makes generate calls fail with the API's 429.
    """

    def __init__(self, *, api_keys: set[str] | None = None,
                 models: list[dict[str, Any]] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.api_keys = set(api_keys or {"AIzaSy-fake-gemini-key"})
        self.models = list(models or DEFAULT_MODELS)

    def exhaust_quota(self, *, retry_in: float = 41.48, daily: bool = False) -> None:
        self.quota = {"retry_in": retry_in, "daily": daily}

    def _model(self, mid: str) -> dict[str, Any] | None:
        return next((m for m in self.models if m["name"] == f"models/{mid}"), None)

    def route(self, ex: Exchange) -> bool:
        req = ex.req
        version, _, rest = req.path.lstrip("/").partition("/")
        if version not in ("v1beta", "v1") or not rest.startswith("models"):
            return False
        if not self._auth(ex):
            return True
        if req.method == "GET" and rest == "models":
            self._list(ex)
            return True
        mid, _, method = rest.removeprefix("models/").partition(":")
        if req.method == "GET" and not method:
            model = self._model(mid)
            if model is None:
                self._error(ex, 404, f"models/{mid} is not found for API version {version}.")
            else:
                ex.send_json(200, model)
            return True
        if req.method != "POST" or method not in ("generateContent", "streamGenerateContent",
                                                  "countTokens"):
            return False
        entry = self._model(mid)
        if entry is None or "generateContent" not in entry["supportedGenerationMethods"]:
            self._error(ex, 404, f"models/{mid} is not found for API version {version}, or is not "
                                 "supported for generateContent. Call ListModels to see the list "
                                 "of available models and their supported methods.")
            return True
        body = req.json if isinstance(req.json, dict) else None
        if method == "countTokens":
            self._count(ex, body or {}, mid)
        elif self._quota(ex, mid):
            self._answer(ex, body, mid, method == "streamGenerateContent", lambda r: r)
        return True

    def _auth(self, ex: Exchange) -> bool:
        key = ex.req.headers.get("x-goog-api-key") or (ex.req.query.get("key") or [None])[0]
        if not key:
            self._error(ex, 403, "Method doesn't allow unregistered callers (callers without "
                                 "established identity). Please use API Key or other form of API "
                                 "consumer identity to call this API.")
            return False
        if key not in self.api_keys:
            self._error(ex, 400, "API key not valid. Please pass a valid API key.",
                        [{"@type": RPC + "ErrorInfo", "reason": "API_KEY_INVALID",
                          "domain": "googleapis.com",
                          "metadata": {"service": "generativelanguage.googleapis.com"}}])
            return False
        return True

    def _list(self, ex: Exchange) -> None:
        q = ex.req.query
        size = int((q.get("pageSize") or ["50"])[0])
        start = int((q.get("pageToken") or ["0"])[0] or 0)
        page = self.models[start:start + size]
        out: dict[str, Any] = {"models": page}
        if start + size < len(self.models):
            out["nextPageToken"] = str(start + size)
        ex.send_json(200, out)

    def _quota(self, ex: Exchange, model: str) -> bool:
        q = self.quota
        if q is None:
            return True
        metric = "generate_content_free_tier_requests"
        quota_id = ("GenerateRequestsPerDayPerProjectPerModel-FreeTier" if q["daily"]
                    else "GenerateRequestsPerMinutePerProjectPerModel-FreeTier")
        self._error(ex, 429, "You exceeded your current quota, please check your plan and billing "
                             "details. For more information on this error, head to: "
                             "https://ai.google.dev/gemini-api/docs/rate-limits.\n* Quota exceeded"
                             f" for metric: generativelanguage.googleapis.com/{metric}, limit: 10,"
                             f" model: {model}\nPlease retry in {q['retry_in']}s.",
                    [{"@type": RPC + "QuotaFailure", "violations": [
                        {"quotaMetric": f"generativelanguage.googleapis.com/{metric}",
                         "quotaId": quota_id,
                         "quotaDimensions": {"location": "global", "model": model},
                         "quotaValue": "10"}]},
                     {"@type": RPC + "Help", "links": [
                         {"description": "Learn more about Gemini API quotas",
                          "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
                     {"@type": RPC + "RetryInfo", "retryDelay": f"{int(q['retry_in'])}s"}])
        return False

    def _count(self, ex: Exchange, body: dict[str, Any], model: str) -> None:
        inner = body.get("generateContentRequest") or body.get("generate_content_request")
        if inner is not None and "contents" in body:
            self._error(ex, 400, "contents and generate_content_request cannot both be set.")
            return
        request = inner if isinstance(inner, dict) else {"contents": body.get("contents")}
        try:
            self.brain.validate({k: v for k, v in request.items() if k != "model"}, model)
        except BadRequest as exc:
            self._error(ex, 400, exc.message)
            return
        total = self.brain.plan(request).prompt_tokens
        ex.send_json(200, {"totalTokens": total,
                           "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}]})

