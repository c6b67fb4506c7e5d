"""Which real upstream a proxied request goes to, and whether a pooled
credential may go there (pure: no mitmproxy, no I/O).

mitmproxy connects to ``flow.request.host:port``: the CONNECT authority inside
a tunnel, the URL's host for an absolute-form request, the ``Host`` header for
an origin-form one.  That address is the **target**; every decision (intercept
or not, which provider, which credential) is taken from it.  A ``Host`` header,
an HTTP/2 ``:authority`` or, inside a tunnel, the TLS SNI that names anything
else is refused, so a client cannot pick the credential with one name and the
destination with another.  Names compare case-insensitively, without one
trailing dot, IP literals in canonical form, and a missing port means the
scheme's default.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from tokn.hosts import host_matches, normalize_host, parse_authority

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Target:
    """Where the request really goes: normalised host, port, and whether the
    upstream connection is TLS (scheme ``https``)."""

    host: str
    port: int
    tls: bool


def target_of(host: str, port: int, scheme: str) -> Target:
    return Target(normalize_host(host), port, scheme == "https")


def check_names(target: Target, *, scheme: str, host_headers: Iterable[str],
                authority: str = "", tunnel_sni: str | None = None) -> str | None:
    """``None`` when every name the client sent agrees with ``target``, else a
    message for a 400.  ``host_headers`` are all ``Host`` values, ``authority``
    the HTTP/2 ``:authority`` (or the absolute-form authority), ``tunnel_sni``
    the SNI of TLS spoken inside a CONNECT tunnel (``None`` otherwise)."""
    default_port = DEFAULT_PORTS.get(scheme, target.port)
    values = list(host_headers)
    if len(values) > 1:
        return "the request carries more than one Host header"
    named = [("Host", v) for v in values]
    if authority:
        named.append((":authority", authority))
    for label, value in named:
        try:
            host, port = parse_authority(value, default_port)
        except ValueError:
            return f"the {label} header {value!r} is not host[:port]"
        if (host, port) != (target.host, target.port):
            return (f"the {label} header names {value!r}, but the request goes to "
                    f"{_show(target)}; send the request to the host it names")
    if tunnel_sni and normalize_host(tunnel_sni) != target.host:
        return (f"the TLS server name {tunnel_sni!r} does not match the tunnel's host "
                f"{target.host!r}")
    return None


def credential_may_go(target: Target, *, base_url: str, provider_hosts: Iterable[str]) -> bool:
    """Whether a pooled account's credential may be sent to ``target``: only
    over TLS, and only to the account's configured ``base_url`` (host and
    port) or, for an account on its provider's default URL, to that provider's
    own hosts."""
    if not target.tls:
        return False
    if base_url:
        parts = urlsplit(base_url)
        if parts.scheme != "https" or not parts.hostname:
            return False
        try:
            port = parts.port or 443
        except ValueError:
            return False
        return (normalize_host(parts.hostname), port) == (target.host, target.port)
    return any(host_matches(pattern, target.host) for pattern in provider_hosts)


def _show(target: Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{host}:{target.port}"
