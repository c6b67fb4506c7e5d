"""tokn's proxy: one list of one-concern mitmproxy addons, in the order their
hooks run.  The in-process runner (:mod:`tokn.mitm.runner`) and the mitmdump
entry (:mod:`tokn.standalone`) both add exactly this list, so both get the
same authentication, guard and routing by construction."""

from __future__ import annotations

from typing import Any

from tokn.mitm.connguard import ConnectionGuard
from tokn.mitm.errorpages import JsonErrorPages
from tokn.mitm.fallback import Fallbacks
from tokn.mitm.localpages import LocalPages
from tokn.mitm.observer import UsageObserver
from tokn.mitm.proxyauth import ProxyAuth
from tokn.mitm.router import Router
from tokn.mitm.services import ProxyServices
from tokn.mitm.upstream import UpstreamOverride


def proxy_addons(services: ProxyServices) -> list[Any]:
    auth = ProxyAuth(services)
    return [
        JsonErrorPages(),  # mitmproxy's own errors as JSON
        ConnectionGuard(auth.access, services),  # caps, the authentication deadline
        LocalPages(services),  # requests to the proxy's own port (no auth needed)
        auth,  # Proxy-Authorization, per connection
        UpstreamOverride(services),  # [proxy_mode].upstream_overrides
        Router(services),  # route / switch / passthrough, or refuse
        Fallbacks(services),  # side calls and upgrades: answered at once when the host is away
        UsageObserver(services),  # rows for switch and passthrough flows; streaming
    ]
