"""GitHub OAuth device flow (RFC 8628) with the VS Code Copilot app's client id.

::

    device = await start_device_flow()
    print(device.verification_uri, device.user_code)
    github_token = await poll_for_token(device, on_status=print)

Polling follows the RFC to the letter: wait ``interval`` seconds between
polls; ``authorization_pending`` -> keep polling; ``slow_down`` -> use the
interval GitHub sends back, else the old one + 5 s, for this and every later
poll; ``expired_token`` / ``access_denied`` / anything else -> a
:class:`~tokn.errors.ToknError` saying what to do.  The whole wait is bounded
by the code's ``expires_in``; it never loops forever.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from tokn.auth import json_object
from tokn.endings import describe
from tokn.errors import ToknError

CLIENT_ID = "Iv1.b507a08c87ecfe98"
SCOPE = "read:user"
DEFAULT_GITHUB_URL = "https://github.com"
DEFAULT_API_URL = "https://api.github.com"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
SLOW_DOWN_STEP = 5.0
MAX_TRANSIENT_ERRORS = 3
_HEADERS = {"accept": "application/json", "user-agent": "tokn (GitHub device flow)"}

# Resolved at call time so tests can monkeypatch ``tokn.auth.github._sleep``.
_sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep


@dataclass
class DeviceCode:
    """What ``POST /login/device/code`` answered, plus where to poll."""

    device_code: str
    user_code: str
    verification_uri: str
    expires_in: float
    interval: float
    verification_uri_complete: str | None = None
    github_url: str = DEFAULT_GITHUB_URL
    client_id: str = CLIENT_ID
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def api_url_for(github_url: str) -> str:
    """The REST API base for a GitHub web host: github.com -> api.github.com,
    ``X.ghe.com`` -> ``api.X.ghe.com``, a GitHub Enterprise Server -> ``/api/v3``."""
    github_url = (github_url or DEFAULT_GITHUB_URL).rstrip("/")
    parts = urlsplit(github_url)
    host = (parts.hostname or "").lower()
    if host in ("github.com", "www.github.com"):
        return DEFAULT_API_URL
    if host.endswith(".ghe.com"):
        return f"{parts.scheme}://api.{parts.netloc}"
    return f"{github_url}/api/v3"


def _client(transport: httpx.AsyncBaseTransport | None, timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport, timeout=timeout, headers=_HEADERS)




async def start_device_flow(*, github_url: str = DEFAULT_GITHUB_URL, client_id: str = CLIENT_ID,
                            scope: str = SCOPE,
                            transport: httpx.AsyncBaseTransport | None = None,
                            timeout: float = 30.0) -> DeviceCode:
    """Ask GitHub for a device code and a user code to show the user."""
    github_url = (github_url or DEFAULT_GITHUB_URL).rstrip("/")
    url = f"{github_url}/login/device/code"
    async with _client(transport, timeout) as client:
        try:
            resp = await client.post(url, json={"client_id": client_id, "scope": scope})
        except httpx.HTTPError as exc:
            raise ToknError(f"cannot reach {url}: {describe(exc)}",
                            status=502, code="github_unreachable") from exc
    data = json_object(resp)
    if resp.status_code >= 400 or "device_code" not in data:
        detail = data.get("error_description") or data.get("error") or resp.text[:200]
        raise ToknError(f"GitHub refused to start the device flow ({resp.status_code} from "
                        f"{url}): {detail}", status=502, code="device_flow_failed")
    try:
        return DeviceCode(
            device_code=str(data["device_code"]),
            user_code=str(data["user_code"]),
            verification_uri=str(data.get("verification_uri") or f"{github_url}/login/device"),
            expires_in=float(data.get("expires_in") or 900),
            interval=max(float(data.get("interval") if data.get("interval") is not None
                               else 5), 0.0),
            verification_uri_complete=data.get("verification_uri_complete"),
            github_url=github_url,
            client_id=client_id,
            raw=data,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ToknError(f"GitHub answered an unreadable device code from {url}: {data!r}",
                        status=502, code="device_flow_failed") from exc


async def poll_for_token(device: DeviceCode, *,
                         sleep: Callable[[float], Awaitable[Any]] | None = None,
                         on_status: Callable[[str], Any] | None = None,
                         transport: httpx.AsyncBaseTransport | None = None,
                         clock: Callable[[], float] = time.monotonic,
                         timeout: float = 30.0) -> str:
    """Poll until the user authorises the device; return the GitHub token.

    ``on_status`` gets ``"pending"``, ``"slow_down"`` or ``"authorized"``.  The
    wait ends at ``device.expires_in`` whichever is first to run out: the wall
    clock or the sum of the waits (so an instant ``sleep`` in tests ends too).
    """
    sleep = sleep or _sleep
    url = f"{device.github_url.rstrip('/')}/login/oauth/access_token"
    payload = {"client_id": device.client_id, "device_code": device.device_code,
               "grant_type": GRANT_TYPE}
    interval = device.interval
    start = clock()
    waited = 0.0
    transient = 0

    def expired() -> ToknError:
        return ToknError(
            f"the login code {device.user_code} expired before it was authorised; "
            "run `tokn login` again and enter the new code.",
            status=401, code="expired_token")

    async with _client(transport, timeout) as client:
        while True:
            if waited + interval > device.expires_in or clock() - start > device.expires_in:
                raise expired()
            await sleep(interval)
            waited += interval
            try:
                resp = await client.post(url, json=payload)
            except httpx.TransportError as exc:
                transient += 1
                if transient >= MAX_TRANSIENT_ERRORS:
                    raise ToknError(f"cannot reach {url}: {describe(exc)}",
                                    status=502, code="github_unreachable") from exc
                continue
            transient = 0
            data = json_object(resp)
            token = data.get("access_token")
            if token:
                if on_status:
                    on_status("authorized")
                return str(token)
            error = data.get("error")
            if error == "authorization_pending":
                if on_status:
                    on_status("pending")
                continue
            if error == "slow_down":
                new = data.get("interval")
                try:
                    interval = float(new) if new is not None else interval + SLOW_DOWN_STEP
                except (TypeError, ValueError):
                    interval += SLOW_DOWN_STEP
                if on_status:
                    on_status("slow_down")
                continue
            if error == "expired_token":
                raise expired()
            if error == "access_denied":
                raise ToknError("the login was denied on GitHub (access_denied); "
                                "run `tokn login` again and approve the request.",
                                status=401, code="access_denied")
            detail = data.get("error_description") or error or resp.text[:200]
            raise ToknError(f"GitHub login failed ({resp.status_code} from {url}): {detail}",
                            status=502, code=str(error or "device_flow_failed"))


async def fetch_user(github_token: str, *, api_url: str = DEFAULT_API_URL,
                     transport: httpx.AsyncBaseTransport | None = None,
                     timeout: float = 15.0) -> dict[str, Any]:
    """``GET /user`` for the token's owner (``login``...); ``{}`` when it fails."""
    url = f"{api_url.rstrip('/')}/user"
    async with _client(transport, timeout) as client:
        try:
            resp = await client.get(url, headers={"authorization": f"token {github_token}"})
        except httpx.HTTPError:
            return {}
    return json_object(resp) if resp.status_code == 200 else {}
