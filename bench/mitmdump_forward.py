"""A mitmdump script for the benchmarks' ``mitmdump`` row: mitmproxy on its
own, intercepting as tokn's proxy does, sending every request to the fast
upstream (``BENCH_UPSTREAM``, e.g. ``http://127.0.0.1:PORT``) and streaming
every answer.  What mitmproxy itself costs a request, with none of tokn's
work: the floor under tokn's MITM rows."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from mitmproxy import http

_UPSTREAM = urlsplit(os.environ["BENCH_UPSTREAM"])


def requestheaders(flow: http.HTTPFlow) -> None:
    flow.request.scheme = _UPSTREAM.scheme
    flow.request.host = _UPSTREAM.hostname or "127.0.0.1"
    flow.request.port = _UPSTREAM.port or 80


def responseheaders(flow: http.HTTPFlow) -> None:
    if flow.response is not None:
        flow.response.stream = True
