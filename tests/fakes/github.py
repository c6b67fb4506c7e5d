"""Fake GitHub: OAuth device flow, Copilot token exchange, Copilot plan/quota, /user.

The real endpoints live on two hosts (``github.com`` for ``/login/...``,
``api.github.com`` for the rest); here they all live on one server, so a
test points both of tokn's overrides at ``fake.url``.

Facts mirrored (see tests/fakes/README.md): GitHub answers device-flow poll
errors with HTTP 200 and ``{"error", "error_description", "error_uri"}``;
``slow_down`` adds 5 s to the interval and reports the new ``interval``;
answers are JSON only when the request has ``Accept: application/json``
(else ``application/x-www-form-urlencoded``).
"""

from __future__ import annotations

import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from .base import CapturedRequest, Exchange, FakeServer

__all__ = ["DEVICE_GRANT_TYPE", "FakeGitHub"]

DEVICE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
ERROR_URI = (
    "https://docs.github.com/developers/apps/authorizing-oauth-apps#error-codes-for-the-device-flow"
)

POLL_ERRORS = {
    "authorization_pending": "The authorization request is still pending.",
    "slow_down": "Too many requests have been made in the same timeframe.",
    "expired_token": "The device_code has expired.",
    "access_denied": "The authorization request was denied.",
    "incorrect_device_code": "The device_code provided is not valid.",
    "incorrect_client_credentials": "The client_id is not valid.",
    "unsupported_grant_type": "The grant type is not supported.",
    "device_flow_disabled": "Device flow has not been enabled for this app.",
}


class FakeGitHub(FakeServer):
    """github.com + api.github.com, as far as tokn uses them.

    Constructor args (all also settable as attributes later):
        client_id: expected OAuth client id (None = accept any).
        poll_script: answers of successive token polls, each one of
            "authorization_pending", "slow_down", "expired_token",
            "access_denied", "incorrect_device_code", "success"; the last
            entry repeats once the script is used up.  Default ["success"].
        interval: device-flow polling interval (s) handed out; default 5.
        enforce_interval: answer ``slow_down`` (without consuming the
            script) when a poll comes sooner than ``interval`` s after the
            previous one, as GitHub does.  Default False.
        access_token: GitHub token handed out on success (default: a fresh
            ``ghu_...`` each time).
        valid_github_tokens: set of GitHub tokens accepted by the api.github.com
            routes; None = any token starting with "gh".  Tokens issued by the
            device flow are added to the set automatically.
        token_ttl: Copilot token lifetime in seconds (default 1800).
        refresh_in: ``refresh_in`` reported (default ttl-300, or ttl//2 if ttl <= 600).
        copilot_api_url: ``endpoints.api`` in the token and user answers
            (default: this fake's own url; point it at a FakeLLM's url).
        sku, copilot_plan, login: reported identity values.
    """

    def __init__(
        self,
        *,
        client_id: str | None = None,
        poll_script: list[str] | None = None,
        interval: int = 5,
        enforce_interval: bool = False,
        access_token: str | None = None,
        valid_github_tokens: set[str] | None = None,
        token_ttl: int = 1800,
        refresh_in: int | None = None,
        copilot_api_url: str | None = None,
        sku: str = "monthly_subscriber_quota",
        copilot_plan: str = "individual",
        login: str = "octocat",
        user_code: str = "WDJB-MJHT",
        expires_in: int = 899,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.client_id = client_id
        self.poll_script: list[str] = list(poll_script or ["success"])
        self.interval = interval
        self.enforce_interval = enforce_interval
        self.access_token = access_token
        self.valid_github_tokens = (
            set(valid_github_tokens) if valid_github_tokens is not None else None
        )
        self.token_ttl = token_ttl
        self.refresh_in = refresh_in
        self.copilot_api_url = copilot_api_url
        self.sku = sku
        self.copilot_plan = copilot_plan
        self.login = login
        self.logins: dict[str, str] = {}  # github token -> login (else self.login)
        self.user_code = user_code
        self.expires_in = expires_in
        self.quota_reset_date: str | None = None  # default: 1st of next month
        self.quota_snapshots: dict[str, dict[str, Any]] = {
            "chat": {
                "entitlement": 0,
                "remaining": 0,
                "unlimited": True,
                "overage_permitted": False,
            },
            "completions": {
                "entitlement": 0,
                "remaining": 0,
                "unlimited": True,
                "overage_permitted": False,
            },
            "premium_interactions": {
                "entitlement": 300,
                "remaining": 300,
                "unlimited": False,
                "overage_permitted": False,
            },
        }
        self.copilot_user_override: dict[str, Any] | None = None  # replaces the whole answer
        self.copilot_token_extra: dict[str, Any] = {}  # merged into the token answer
        self._gh_lock = threading.Lock()
        self._reset_state()

    def _reset_state(self) -> None:
        self.device_codes: dict[str, dict[str, Any]] = {}  # device_code -> {client_id, scope, ...}
        self.poll_times: list[float] = []  # time.monotonic() of each token poll
        self.poll_answers: list[str] = []  # what each poll was answered
        self._poll_index = 0
        self.issued_github_tokens: list[str] = []
        self.exchange_count = 0
        self.issued_copilot_tokens: dict[
            str, dict[str, Any]
        ] = {}  # token -> {github_token, expires_at}
        self.revoked_copilot_tokens: set[str] = set()
        self._current_interval = self.interval

    def reset(self) -> None:
        super().reset()
        with self._gh_lock:
            self._reset_state()

    # -- helpers for tests -----------------------------------------------
    def set_quota(self, name: str, **fields: Any) -> None:
        """Update one quota snapshot, e.g. ``set_quota("premium_interactions", remaining=0)``."""
        self.quota_snapshots.setdefault(name, {}).update(fields)

    def is_valid_copilot_token(self, token: str | None, req: CapturedRequest | None = None) -> bool:
        """True for a Copilot token this fake issued that is neither expired nor revoked.

        Pass as ``FakeLLM(token_validator=github.is_valid_copilot_token)``.
        """
        if not token:
            return False
        with self._gh_lock:
            info = self.issued_copilot_tokens.get(token)
            if info is None or token in self.revoked_copilot_tokens:
                return False
            return time.time() < info["expires_at"]

    def revoke_copilot_tokens(self) -> None:
        """Make every Copilot token issued so far invalid (upstream then answers 401)."""
        with self._gh_lock:
            self.revoked_copilot_tokens.update(self.issued_copilot_tokens)

    @property
    def last_copilot_token(self) -> str | None:
        with self._gh_lock:
            return next(reversed(self.issued_copilot_tokens), None)

    # -- routing ----------------------------------------------------------
    def route(self, ex: Exchange) -> bool:
        req = ex.req
        key = (req.method, req.path.rstrip("/") or "/")
        handler = {
            ("POST", "/login/device/code"): self._device_code,
            ("POST", "/login/oauth/access_token"): self._access_token,
            ("GET", "/copilot_internal/v2/token"): self._copilot_token,
            ("GET", "/copilot_internal/user"): self._copilot_user,
            ("GET", "/user"): self._user,
        }.get(key)
        if handler is None:
            return False
        handler(ex)
        return True

    def error_payload(
        self, status: int, message: str | None, req: CapturedRequest
    ) -> tuple[Any, dict[str, str]]:
        default = {401: "Bad credentials", 403: "Forbidden", 404: "Not Found"}.get(status, "Error")
        return (
            {
                "message": message or default,
                "documentation_url": "https://docs.github.com/rest",
                "status": str(status),
            },
            {},
        )

    @staticmethod
    def _wants_json(req: CapturedRequest) -> bool:
        return "json" in (req.headers.get("accept") or "").lower()

    def _oauth_answer(self, ex: Exchange, payload: dict[str, Any], status: int = 200) -> None:
        if self._wants_json(ex.req):
            ex.send_json(status, payload)
        else:
            ex.send(status, urlencode(payload), "application/x-www-form-urlencoded; charset=utf-8")

    # -- github.com -------------------------------------------------------
    def _device_code(self, ex: Exchange) -> None:
        p = ex.req.params()
        cid = p.get("client_id")
        if not cid or (self.client_id is not None and cid != self.client_id):
            self._oauth_answer(ex, self._poll_error("incorrect_client_credentials"))
            return
        device_code = secrets.token_hex(20)
        with self._gh_lock:
            self._current_interval = self.interval
            self.device_codes[device_code] = {
                "client_id": cid,
                "scope": p.get("scope", ""),
                "issued": time.monotonic(),
            }
        self._oauth_answer(
            ex,
            {
                "device_code": device_code,
                "user_code": self.user_code,
                "verification_uri": "https://github.com/login/device",
                "expires_in": self.expires_in,
                "interval": self.interval,
            },
        )

    def _poll_error(self, code: str) -> dict[str, Any]:
        return {
            "error": code,
            "error_description": POLL_ERRORS.get(code, code),
            "error_uri": ERROR_URI,
        }

    def _access_token(self, ex: Exchange) -> None:
        p = ex.req.params()
        now = time.monotonic()
        with self._gh_lock:
            prev = self.poll_times[-1] if self.poll_times else None
            self.poll_times.append(now)
            if self.client_id is not None and p.get("client_id") != self.client_id:
                answer = "incorrect_client_credentials"
            elif p.get("grant_type") != DEVICE_GRANT_TYPE:
                answer = "unsupported_grant_type"
            elif p.get("device_code") not in self.device_codes:
                answer = "incorrect_device_code"
            elif self.enforce_interval and prev is not None and now - prev < self._current_interval:
                answer = "slow_down"
            else:
                idx = min(self._poll_index, len(self.poll_script) - 1)
                answer = self.poll_script[idx]
                self._poll_index += 1
            self.poll_answers.append(answer)
            if answer == "success":
                token = self.access_token or "ghu_" + secrets.token_urlsafe(27)[:36]
                self.issued_github_tokens.append(token)
                if self.valid_github_tokens is not None:
                    self.valid_github_tokens.add(token)
                payload: dict[str, Any] = {
                    "access_token": token,
                    "token_type": "bearer",
                    "scope": self.device_codes[p["device_code"]].get("scope") or "read:user",
                }
            else:
                payload = self._poll_error(answer)
                if answer == "slow_down":
                    self._current_interval += 5
                    payload["interval"] = self._current_interval
        self._oauth_answer(ex, payload)

    # -- api.github.com ---------------------------------------------------
    def _github_token(self, req: CapturedRequest) -> str | None:
        auth = req.headers.get("authorization") or ""
        scheme, _, value = auth.partition(" ")
        if scheme.lower() not in ("token", "bearer") or not value.strip():
            return None
        token = value.strip()
        with self._gh_lock:
            ok = (
                token.startswith("gh")
                if self.valid_github_tokens is None
                else token in self.valid_github_tokens
            )
        return token if ok else None

    def _unauthorized(self, ex: Exchange) -> None:
        payload, extra = self.error_payload(401, "Bad credentials", ex.req)
        ex.send_json(401, payload, extra)

    def _api_url(self) -> str:
        return self.copilot_api_url or self.url

    def _endpoints(self) -> dict[str, str]:
        return {
            "api": self._api_url(),
            "origin-tracker": "https://origin-tracker.individual.githubcopilot.com",
            "proxy": "https://proxy.individual.githubcopilot.com",
            "telemetry": "https://telemetry.individual.githubcopilot.com",
        }

    def _copilot_token(self, ex: Exchange) -> None:
        gh = self._github_token(ex.req)
        if gh is None:
            self._unauthorized(ex)
            return
        now = int(time.time())
        ttl = int(self.token_ttl)
        exp = now + ttl
        refresh_in = self.refresh_in
        if refresh_in is None:
            refresh_in = ttl - 300 if ttl > 600 else max(ttl // 2, 0)
        with self._gh_lock:
            self.exchange_count += 1
            n = self.exchange_count
            token = (
                f"tid={secrets.token_hex(16)};exp={exp};sku={self.sku};proxy-ep=proxy.individual"
                f".githubcopilot.com;st=dotcom;chat=1;cit=1;malfil=1;editor_preview_features=1;"
                f"n={n}:{secrets.token_hex(32)}"
            )
            self.issued_copilot_tokens[token] = {"github_token": gh, "expires_at": exp, "n": n}
        ex.req.meta["copilot_token"] = token
        body: dict[str, Any] = {
            "token": token,
            "expires_at": exp,
            "refresh_in": refresh_in,
            "endpoints": self._endpoints(),
            "sku": self.sku,
            "chat_enabled": True,
            "annotations_enabled": True,
            "code_quote_enabled": True,
            "code_review_enabled": True,
            "codesearch": True,
            "copilotignore_enabled": False,
            "individual": self.copilot_plan == "individual",
            "limited_user_quotas": None,
            "limited_user_reset_date": None,
            "organization_list": [],
            "prompt_8k": True,
            "public_suggestions": "disabled",
            "telemetry": "disabled",
            "tracking_id": secrets.token_hex(16),
            "xcode": True,
            "xcode_chat": False,
        }
        body.update(self.copilot_token_extra)
        ex.send_json(200, body)

    def _reset_date(self) -> str:
        if self.quota_reset_date:
            return self.quota_reset_date
        today = datetime.now(UTC).date().replace(day=1)
        return (today + timedelta(days=32)).replace(day=1).isoformat()

    def _copilot_user(self, ex: Exchange) -> None:
        gh = self._github_token(ex.req)
        if gh is None:
            self._unauthorized(ex)
            return
        if self.copilot_user_override is not None:
            ex.send_json(200, self.copilot_user_override)
            return
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        snaps: dict[str, Any] = {}
        for name, q in self.quota_snapshots.items():
            ent = q.get("entitlement", 0)
            rem = q.get("remaining", 0)
            unlimited = bool(q.get("unlimited", False))
            pct = 100.0 if unlimited or not ent else round(100.0 * rem / ent, 4)
            snaps[name] = {
                "entitlement": ent,
                "overage_count": q.get("overage_count", 0),
                "overage_permitted": bool(q.get("overage_permitted", False)),
                "percent_remaining": q.get("percent_remaining", pct),
                "quota_id": name,
                "quota_remaining": q.get("quota_remaining", rem),
                "remaining": rem,
                "unlimited": unlimited,
                "timestamp_utc": stamp,
            }
        reset = self._reset_date()
        ex.send_json(
            200,
            {
                "login": self.logins.get(gh, self.login),
                "access_type_sku": self.sku,
                "analytics_tracking_id": "0" * 32,
                "assigned_date": "2024-01-01T00:00:00Z",
                "can_signup_for_limited": False,
                "chat_enabled": True,
                "copilot_plan": self.copilot_plan,
                "endpoints": self._endpoints(),
                "organization_login_list": [],
                "organization_list": [],
                "quota_reset_date": reset,
                "quota_reset_date_utc": reset + "T00:00:00.000Z",
                "quota_snapshots": snaps,
            },
        )

    def _user(self, ex: Exchange) -> None:
        gh = self._github_token(ex.req)
        if gh is None:
            self._unauthorized(ex)
            return
        login = self.logins.get(gh, self.login)
        ex.send_json(
            200,
            {
                "login": login,
                "id": 583231,
                "node_id": "MDQ6VXNlcjU4MzIzMQ==",
                "type": "User",
                "name": login.capitalize(),
                "email": None,
                "html_url": f"https://github.com/{login}",
            },
            {"X-OAuth-Scopes": "read:user"},
        )
