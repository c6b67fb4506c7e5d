"""Addon: requests addressed to the proxy's own port (like mitmproxy's
``onboarding``): a short help text at ``/``, LAN bootstrap (``/-/lan/...``,
served by the listener), 404 for the rest.  They need no proxy
authentication: nothing here uses the pool."""

from __future__ import annotations

from mitmproxy import http

from tokn.mitm.services import HANDLED, ProxyServices, answer, handled, in_tunnel

HELP_TEXT = """tokn proxy

This is tokn's local HTTP(S) forward proxy. Point clients at it with
    eval "$(tokn proxy env)"
LLM API hosts on the allowlist are intercepted (route / switch / passthrough);
every other host is tunnelled untouched.  See `tokn proxy --help`.
"""


def for_proxy_itself(flow: http.HTTPFlow) -> bool:
    """A request sent to this proxy as a server (a plain ``GET /`` or
    ``/-/lan/...`` to the proxy's own port), under whatever name."""
    sockname = flow.client_conn.sockname
    return not in_tunnel(flow) and bool(sockname) and flow.request.port == sockname[1]


class LocalPages:
    name = "tokn_localpages"

    def __init__(self, services: ProxyServices) -> None:
        self.services = services

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if handled(flow) or not for_proxy_itself(flow):
            return
        req = flow.request
        path = req.path.split("?", 1)[0]
        if path in ("/", "/help") and req.method == "GET":
            answer(flow, self.services, 200, HELP_TEXT.encode(),
                   {"content-type": "text/plain; charset=utf-8"})
        elif path.startswith("/-/lan/") and req.method == "GET":
            # LAN bootstrap lives on the listener: hand the plain GET to it,
            # keeping the Host the client used (setting .host rewrites it).
            flow.metadata[HANDLED] = True
            host_header, public_port = req.host_header, req.port
            req.scheme, (req.host, req.port) = "http", self.services.listener
            if host_header is not None:
                req.host_header = host_header
            req.headers["x-forwarded-port"] = str(public_port)
        else:
            answer(flow, self.services, 404,
                   b"tokn proxy: not found. Use this port as an HTTP(S) proxy.\n",
                   {"content-type": "text/plain"})
