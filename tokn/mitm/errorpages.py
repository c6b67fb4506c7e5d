"""Addon: mitmproxy's own error answers (upstream unreachable, connection
closed, malformed request) as JSON instead of an HTML page, so an API client
behind the proxy always gets an error it can read."""

from __future__ import annotations

import json
from typing import Any

from mitmproxy import http
from mitmproxy.net.http import http1
from mitmproxy.proxy.layers.http import _http1, _http2

from tokn.errors import anthropic_error


def json_error_page(status: int, message: str) -> bytes:
    """An error body both the OpenAI and the Anthropic SDKs read as theirs
    (``error.message`` / ``error.type`` / ``error.code`` and ``type: error``)."""
    body = anthropic_error(status, f"tokn proxy: {message}")
    body["error"].update(code="proxy_error", param=None)
    return json.dumps(body).encode()


def _json_error_response(status: int, message: str = "") -> bytes:
    resp = http.Response.make(status, json_error_page(status, message),
                              {"content-type": "application/json", "connection": "close"})
    return http1.assemble_response(resp)


class JsonErrorPages:
    """mitmproxy has no hook for its own error pages (mitmproxy#4854, PR
    #7999): loading this addon replaces its two page builders."""

    name = "tokn_errorpages"

    def load(self, loader: Any) -> None:
        _http1.make_error_response = _json_error_response
        _http2.format_error = json_error_page  # HTTP/2: the body (its header says HTML)
