"""Requests to intercepted hosts that are not model calls ("side calls"), and
how route mode answers each one (pure data).

Route mode serves the model endpoints of :mod:`tokn.wire` from the pool.
Everything else agents and SDKs ask an intercepted host for (settings,
feature flags, telemetry, MCP registries, file APIs) goes to the original host
as the client sent it, with the client's own credentials and never a pooled
one.  When that cannot work (the client sent no credentials, or the host
cannot be reached) the proxy answers at once with the row's ``offline``
answer, a status the client accepts without retrying (never a 5xx: Claude Code
retries those 4 times with back-off, about 5 s before its first model turn).
A 5xx from the host itself is replaced by the same answer.

Observed with Claude Code 2.1.197 and Codex 0.171 run through the proxy
against loopback fakes (``tests/agents/``); the default row covers paths no
agent was seen to call (the SDKs' file, batch and retrieval APIs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tokn import hosts, wire


@dataclass(frozen=True)
class SideCall:
    """One known side call: ``path`` is a prefix of the request path (query
    excluded) on a host matching ``host``; ``offline`` the status answered when
    the host cannot be asked, with ``body`` (JSON) or the caller's error."""

    host: str
    method: str
    path: str
    who: str  # which client makes it
    what: str  # what it is for
    offline: int
    body: dict | None = None  # None: an error body in the caller's API format
    public: bool = False  # the host serves it without credentials: passed on even then

    def matches(self, host: str, method: str, path: str) -> bool:
        return (self.method in ("*", method.upper())
                and hosts.host_matches(self.host, host)
                and path.split("?", 1)[0].startswith(self.path))


SIDE_CALLS: tuple[SideCall, ...] = (
    SideCall("api.anthropic.com", "POST", "/api/eval/", "claude-code",
             "feature flags (remote evaluation)", 404),
    SideCall("api.anthropic.com", "GET", "/api/claude_code/policy_limits", "claude-code",
             "organisation policy limits", 404),
    SideCall("api.anthropic.com", "GET", "/api/claude_code/settings", "claude-code",
             "managed settings", 404),
    SideCall("api.anthropic.com", "GET", "/api/claude_code/organizations/metrics_enabled",
             "claude-code", "whether the organisation collects metrics", 404),
    SideCall("api.anthropic.com", "GET", "/api/claude_cli/bootstrap", "claude-code",
             "start-up bootstrap data", 404),
    SideCall("api.anthropic.com", "GET", "/api/claude_code_penguin_mode", "claude-code",
             "fast-mode availability", 404),
    SideCall("api.anthropic.com", "GET", "/mcp-registry/", "claude-code",
             "the MCP server registry", 200, {"servers": [], "metadata": {"count": 0}},
             public=True),
    SideCall("api.anthropic.com", "POST", "/api/event_logging/", "claude-code",
             "telemetry events (dropped when offline)", 200, {}),
)

# any other path on an intercepted host: passed on, else a 404 in the caller's format
DEFAULT = SideCall("*", "*", "/", "any", "not a model endpoint tokn serves", 404)


def side_call(host: str, method: str, path: str) -> SideCall:
    """The table's row for ``method path`` on ``host`` (:data:`DEFAULT` when none)."""
    host = hosts.normalize_host(host)
    return next((row for row in SIDE_CALLS if row.matches(host, method, path)), DEFAULT)


def offline_body(row: SideCall, api: wire.Api, host: str, path: str, why: str) -> bytes:
    """The JSON body answered with ``row.offline`` when the host cannot be
    asked (``why`` says why, in the error message)."""
    if row.body is not None:
        return json.dumps(row.body).encode()
    message = (f"tokn route mode does not serve {path.split('?', 1)[0]} ({row.what}) and "
               f"did not pass it to {host}: {why}.")
    return json.dumps(api.error(row.offline, message, None)).encode()
