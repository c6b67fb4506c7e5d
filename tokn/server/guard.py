"""The binding guard: nothing listens beyond loopback unless asked (pure)."""

from __future__ import annotations

import ipaddress

EXPOSED = ("the API (every pooled account), the proxy's tunnels to any host, passthrough "
           "traffic and the /-/lan/ helper routes")


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, allow_remote: bool, api_key: str, what: str) -> None:
    """Raise ``ValueError`` with the fix when ``host`` may not be bound."""
    if is_loopback(host):
        return
    if not allow_remote:
        raise ValueError(
            f"refusing to bind {what} to {host}: that would expose {EXPOSED} to the network. "
            f"Use 127.0.0.1, or pass --insecure-allow-remote on a trusted network.")
    if not api_key:
        raise ValueError(
            "remote access needs an API key, and none is set: run "
            "`tokn config set server.api_key $(openssl rand -hex 24)` or pass --api-key.")
