"""Addon: ``[proxy_mode].upstream_overrides`` (like mitmproxy's ``mapremote``,
at the connection level): an intercepted host is reached at another address,
while TLS still names and verifies the real host."""

from __future__ import annotations

from typing import Any

from tokn import hosts
from tokn.config import Config
from tokn.mitm.services import ProxyServices


def overrides_of(cfg: Config) -> dict[str, str]:
    return {hosts.normalize_host(h): v for h, v in cfg.proxy_mode.upstream_overrides.items()}


class UpstreamOverride:
    name = "tokn_upstream"

    def __init__(self, services: ProxyServices) -> None:
        self.services = services
        self._seen: tuple[Config, dict[str, str]] | None = None

    def _overrides(self) -> dict[str, str]:
        cfg = self.services.config()
        if self._seen is None or self._seen[0] is not cfg:
            self._seen = (cfg, overrides_of(cfg))
        return self._seen[1]

    def server_connect(self, data: Any) -> None:
        address = data.server.address
        if not address:
            return
        override = self._overrides().get(hosts.normalize_host(address[0]))
        if override:
            host, _, port = override.rpartition(":")
            data.server.address = (host or override, int(port) if port else address[1])
