"""Run mitmproxy in-process with tokn's addons (see shared notes on embedding).

``Master`` (not ``DumpMaster``, whose error check exits the process) with the
few mitmproxy addons a proxy needs (:func:`core_addons`), lazy upstream
connections, leaves naming only the requested host, tokn's own CA, and a
shutdown that really closes the listening socket.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from typing import Any

from tokn import hosts, paths
from tokn.config import Config
from tokn.errors import ToknError
from tokn.mitm import modes
from tokn.mitm.services import ProxyServices


def upstream_bundle(cfg: Config) -> Path:
    """certifi + system roots + ``[proxy_mode].upstream_ca_bundle`` in one file,
    for mitmproxy's upstream verification (which *replaces* default roots)."""
    import ssl

    import certifi

    parts = [Path(certifi.where()).read_text()]
    system = ssl.get_default_verify_paths().cafile
    for extra in (system, cfg.proxy_mode.upstream_ca_bundle):
        if extra and Path(extra).expanduser().is_file():
            parts.append(Path(extra).expanduser().read_text())
    out = paths.state_dir() / "upstream-ca.pem"
    paths.write_private(out, "\n".join(parts), mode=0o644)
    return out


def allow_hosts(cfg: Config) -> list[str]:
    """mitmproxy's ``allow_hosts``: what the proxy opens (the rest is tunnelled as is)."""
    patterns = hosts.intercept_patterns(cfg.proxy_mode.intercept_hosts,
                                        cfg.proxy_mode.passthrough_hosts)
    return [modes.allow_hosts_regex(patterns, cfg.proxy_mode.passthrough_hosts)]


def mitm_options(cfg: Config, *, host: str, port: int) -> dict[str, Any]:
    """Options tokn needs, set with ``opts.update`` after the addons are added."""
    from tokn.ca import ensure_ca, mitm_confdir, write_mitm_confdir

    confdir = mitm_confdir()
    ensure_ca(cfg)
    write_mitm_confdir(confdir)
    return {
        "listen_host": host,
        "listen_port": port,
        "confdir": str(confdir),
        "connection_strategy": "lazy",
        "upstream_cert": False,
        "allow_hosts": allow_hosts(cfg),
        "ssl_verify_upstream_trusted_ca": str(upstream_bundle(cfg)),
        # bodies over [server].max_body_mb are streamed, never buffered: the addon
        # decides everything (auth, target, reroute, credentials) from the request
        # head, so nothing reaches an upstream before it was checked.
        "stream_large_bodies": str(int(cfg.server.max_body_mb * 1024 * 1024)),
        "http3": False,
    }


def core_addons() -> list[Any]:
    """mitmproxy's addons tokn's proxy runs on: options and commands (Core), the
    listening servers, protocol detection, TLS, refusing public peers (Block)
    and no h2c.  Not ``default_addons()``: its other two dozen (replay,
    anticache, map/modify, save, export, scripts, DNS, the ``mitm.it``
    onboarding app...) are features tokn does not offer, and every one of them
    is called on every hook of every flow."""
    _addons_package_alone()
    from mitmproxy.addons import block, core, disable_h2c, next_layer, proxyserver, tlsconfig

    return [core.Core(), block.Block(), disable_h2c.DisableH2C(), proxyserver.Proxyserver(),
            next_layer.NextLayer(), tlsconfig.TlsConfig()]


def _addons_package_alone() -> None:
    """Make ``mitmproxy.addons`` importable without its ``__init__``, which
    imports every addon for ``default_addons()``: the onboarding app's Flask,
    Werkzeug and Jinja, the proxy auth's ldap3 and passlib, ~10 MB of a
    running tokn's ~90 MB for code it never runs.  Its submodules import as
    usual.  Nothing when the package is already imported (``mitmdump -s``,
    or anything that ran before)."""
    if "mitmproxy.addons" in sys.modules:
        return
    spec = importlib.util.find_spec("mitmproxy.addons")
    if spec is None:  # pragma: no cover - mitmproxy is a dependency
        return
    sys.modules["mitmproxy.addons"] = importlib.util.module_from_spec(spec)


def mitm_log_level(cfg: Config) -> None:
    """mitmproxy's own records: only errors, unless ``[logging].level`` is debug."""
    import logging

    debug = cfg.logging.level == "debug"
    logging.getLogger("mitmproxy").setLevel(logging.NOTSET if debug else logging.ERROR)


class ProxyRunner:
    """Start/stop one mitmproxy ``Master`` inside the running event loop, with
    :func:`core_addons` and tokn's (:func:`~tokn.mitm.addons.proxy_addons`)."""

    def __init__(self, services: ProxyServices, *, host: str, port: int,
                 route_mode: str | None) -> None:
        self.services = services
        self.host, self.port = host, port
        self.route_mode = route_mode
        self.master: Any = None
        self._task: asyncio.Task | None = None
        self.url = ""
        self.listening = False

    async def start(self) -> None:
        _addons_package_alone()  # before mitmproxy.master, which imports an addon
        from mitmproxy import options
        from mitmproxy.master import Master

        from tokn.mitm.addons import proxy_addons

        cfg = self.services.config()
        mitm_log_level(cfg)
        opts = options.Options()
        self.master = Master(opts)
        self.master.addons.add(*core_addons())
        self.master.addons.add(*proxy_addons(self.services))
        opts.update(**mitm_options(cfg, host=self.host, port=self.port),
                    tokn_route_mode=self.route_mode)
        self._task = asyncio.create_task(self.master.run())
        proxyserver = self.master.addons.get("proxyserver")
        addrs: list = []
        for _ in range(500):
            await asyncio.sleep(0.01)
            addrs = proxyserver.listen_addrs()
            errors = [getattr(s, "last_exception", None) for s in proxyserver.servers]
            if addrs or self._task.done() or any(errors):
                break
        if not addrs:
            errors = [getattr(s, "last_exception", None) for s in proxyserver.servers]
            detail = next((str(e) for e in errors if e), "is the port in use?")
            await self.stop()
            raise ToknError(f"the proxy could not listen on {self.host}:{self.port}: {detail}",
                            status=500)
        self.listening = True
        host, port = addrs[0][0], addrs[0][1]
        self.port = port
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        self.url = f"http://{shown}:{port}"

    def apply(self, cfg: Config) -> None:
        """Take up a changed config: the hosts it intercepts and its log level
        (the rest the addons read from the config in force per request)."""
        mitm_log_level(cfg)
        if self.master is not None:
            wanted = allow_hosts(cfg)
            if list(self.master.options.allow_hosts) != wanted:
                self.master.options.update(allow_hosts=wanted)

    async def stop_listening(self) -> None:
        """Close the listening socket; connections in progress go on."""
        if self.master is None or not self.listening:
            return
        self.listening = False
        proxyserver = self.master.addons.get("proxyserver")
        try:
            await proxyserver.servers.update([])
        except Exception:  # noqa: BLE001 - closing anyway
            pass

    async def stop(self) -> None:
        if self.master is None:
            return
        await self.stop_listening()
        self.master.shutdown()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        self.master = None
