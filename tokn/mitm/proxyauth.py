"""Addon: who may use the proxy (like mitmproxy's own ``proxyauth``).

Authentication is a property of the client connection
(:class:`~tokn.mitm.access.ProxyAccess`): a CONNECT or any request head may
carry ``Proxy-Authorization: Basic`` with the key as password; the identity it
resolves to is put on every flow of the connection (``flow.metadata``), for the
router to hand on.  A refused request is answered with 407 without buffering
more than a small body.
"""

from __future__ import annotations

import logging
from typing import Any

from mitmproxy import http

from tokn.mitm.access import (
    DENIED_HEADERS,
    DENIED_TEXT,
    UNAUTHENTICATED_BODY_LIMIT,
    ProxyAccess,
    refused_whom,
)
from tokn.mitm.services import IDENTITY, PROXY_USER, ProxyServices, answer, handled

STRIP_ALWAYS = ("proxy-authorization", "proxy-connection")
log = logging.getLogger("tokn")


class ProxyAuth:
    name = "tokn_proxyauth"

    def __init__(self, services: ProxyServices) -> None:
        self.services = services
        self.access = ProxyAccess(services.api_key, services.keys)

    def _refused(self, flow: http.HTTPFlow, header: str | None) -> None:
        """Log a refusal with the key's name, never the key (quietly when no
        credentials came: clients often try without first)."""
        peer = flow.client_conn.peername
        cut = self.access.cut(flow.client_conn.id)
        (log.warning if header or cut else log.debug)(
            "proxy: refused %s %s from %s: 407 %s", flow.request.method,
            flow.request.pretty_host, f"{peer[0]}:{peer[1]}" if peer else "-",
            refused_whom(self.services.keys, header, cut))

    def http_connect(self, flow: http.HTTPFlow) -> None:
        header = flow.request.headers.get("proxy-authorization")
        if not self.access.admit(flow.client_conn.id, header):
            self._refused(flow, header)
            flow.response = http.Response.make(407, DENIED_TEXT, DENIED_HEADERS)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if handled(flow):
            return
        req = flow.request
        header = req.headers.get("proxy-authorization")
        if not self.access.admit(flow.client_conn.id, header):
            self._refused(flow, header)
            answer(flow, self.services, 407, DENIED_TEXT, DENIED_HEADERS,
                   UNAUTHENTICATED_BODY_LIMIT)
            return
        for name in STRIP_ALWAYS:
            req.headers.pop(name, None)
        flow.metadata[IDENTITY] = self.access.identity(flow.client_conn.id)
        flow.metadata[PROXY_USER] = self.access.user(flow.client_conn.id)

    def client_disconnected(self, client: Any) -> None:
        self.access.forget(client.id)
