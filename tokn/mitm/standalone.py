"""tokn's routing inside stock ``mitmdump -s`` / ``mitmweb -s``.

The script loader gives us a running mitmproxy; this addon builds tokn's
runtime from the user's config, starts the listener that route mode hands
flows to on a private loopback port, points mitmproxy at tokn's CA and
allowlist, then hands every hook to the same addons ``tokn proxy`` runs
(:class:`~tokn.mitm.addon.ToknAddon`, :class:`~tokn.mitm.connguard.ConnectionGuard`).

The same guard as ``tokn proxy`` applies:

* mitmproxy's default listen address ("every interface") becomes 127.0.0.1;
  any address beyond loopback is refused (mitmproxy exits) unless
  ``--set tokn_insecure_allow_remote=true`` is given *and* ``[server].api_key``
  is set;
* only mitmproxy's regular proxy mode (the one tokn's checks are written for);
* with ``[server].api_key`` set, clients must authenticate
  (``Proxy-Authorization: Basic``, password = the key);
* connection caps and the authentication deadline.

Until tokn is ready connections wait; if it could not start, every connection
is refused rather than proxied unchecked.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from mitmproxy import ctx, http
from mitmproxy.proxy.mode_specs import ProxyMode, RegularMode

from tokn.connlimits import is_loopback_peer

log = logging.getLogger("tokn")

NOT_READY = b"tokn: the proxy is not available (see mitmproxy's event log)\n"


def listen_problem(modes: list[str], listen_host: str, *, allow_remote: bool,
                   api_key: str) -> str | None:
    """Why mitmproxy's listening setup may not run tokn, or ``None`` (pure)."""
    from tokn.server.guard import check_bind

    for spec in modes or ["regular"]:
        mode = ProxyMode.parse(spec)
        if not isinstance(mode, RegularMode):
            return (f"tokn's addon supports only mitmproxy's regular proxy mode, not {spec!r}; "
                    "drop --mode.")
        host = mode.listen_host(listen_host) or "0.0.0.0"
        try:
            check_bind(host, allow_remote=allow_remote, api_key=api_key, what="mitmproxy")
        except ValueError as exc:
            hint = "" if allow_remote else " (mitmproxy: --set tokn_insecure_allow_remote=true)"
            return f"{exc}{hint}"
    return None


class StandaloneAddon:
    def __init__(self) -> None:
        self.inner: Any = None
        self.guard: Any = None
        self.runtime: Any = None
        self.server: Any = None
        self.refusal: str | None = None
        self.defaulted_host = False
        self._ready: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    def load(self, loader: Any) -> None:
        loader.add_option("tokn_route_mode", str | None, None,
                          "Default route mode for intercepted flows: route, switch or "
                          "passthrough (default: [proxy_mode].route_mode).")
        loader.add_option("tokn_insecure_allow_remote", bool, False,
                          "Let the proxy listen beyond loopback (needs [server].api_key; "
                          "clients then authenticate with Proxy-Authorization).")

    def configure(self, updated: set[str]) -> None:
        if "listen_host" in updated and ctx.options.listen_host == "":
            self.defaulted_host = True
            ctx.options.listen_host = "127.0.0.1"  # mitmproxy's "" means every interface
            return  # configure runs again for the change
        if not {"listen_host", "mode", "tokn_insecure_allow_remote"} & updated:
            return
        from tokn.config import ConfigError, load_config

        try:
            key = load_config().server.api_key
        except ConfigError as exc:
            self._refuse(str(exc))
            return
        problem = listen_problem(list(ctx.options.mode), ctx.options.listen_host,
                                 allow_remote=ctx.options.tokn_insecure_allow_remote, api_key=key)
        if problem:
            self._refuse(problem)
        else:
            self.refusal = None

    def _refuse(self, reason: str) -> None:
        self.refusal = reason
        log.error("tokn addon refuses to run: %s", reason)  # mitmdump exits on startup errors

    def running(self) -> None:
        self._ready = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._start())

    async def _start(self) -> None:
        from tokn.config import load_config
        from tokn.mitm.addon import ToknAddon
        from tokn.mitm.connguard import ConnectionGuard
        from tokn.mitm.modes import check_mode
        from tokn.mitm.runner import mitm_options
        from tokn.runtime import (
            PROXY_KEEP_ALIVE,
            Runtime,
            _bound_port,
            _make_uvicorn,
            client_caps,
        )
        from tokn.server.lan import old_h11_warning

        try:
            if self.refusal:
                return
            cfg = load_config()
            mode = ctx.options.tokn_route_mode
            if mode:
                check_mode(mode, "tokn_route_mode")
            self.runtime = Runtime(cfg)
            self.server = _make_uvicorn(self.runtime.app, "127.0.0.1", 0, "warning", cfg,
                                        keep_alive=PROXY_KEEP_ALIVE, lifespan="off")
            serve_task = asyncio.get_running_loop().create_task(self.server.serve())
            while not self.server.started:
                if serve_task.done():
                    raise RuntimeError("tokn's internal listener did not start")
                await asyncio.sleep(0.01)
            url = f"http://127.0.0.1:{_bound_port(self.server)}"
            opts = mitm_options(cfg, host=ctx.options.listen_host, port=ctx.options.listen_port)
            for name in ("listen_host", "listen_port"):
                opts.pop(name)
            ctx.options.update(**opts)
            inner = ToknAddon(self.runtime, url, route_mode=mode or None,
                              proxy_key=cfg.server.api_key)
            proxyserver = ctx.master.addons.get("proxyserver")
            addrs = proxyserver.listen_addrs()
            if self.defaulted_host and not all(is_loopback_peer(a[0]) for a in addrs):
                # mitmproxy 12 loads scripts after binding: bind again, on loopback
                await proxyserver.servers.update([])
                await proxyserver.setup_servers()
                addrs = proxyserver.listen_addrs()
            inner.self_addrs = {(a[0], a[1]) for a in addrs}
            for addr in addrs:  # what was really bound, whatever the options said
                problem = listen_problem(["regular"], addr[0], api_key=cfg.server.api_key,
                                         allow_remote=ctx.options.tokn_insecure_allow_remote)
                if problem:
                    self._refuse(problem)
                    ctx.master.shutdown()
                    return
            if not all(is_loopback_peer(a[0]) for a in addrs):
                warning = old_h11_warning(h11.__version__)
                if warning:
                    log.warning("tokn: %s", warning)
            self.guard = ConnectionGuard(inner.access, client_caps(cfg),
                                         cfg.server.header_timeout_secs)
            self.inner = inner
            log.warning("tokn: routing active (listener %s, CA from tokn%s)", url,
                        ", proxy authentication on" if cfg.server.api_key else "")
        except Exception as exc:  # noqa: BLE001 - shown in mitmproxy's event log
            self._refuse(f"tokn addon failed to start: {exc}")
        finally:
            assert self._ready is not None
            self._ready.set()

    async def _usable(self) -> bool:
        if self._ready is not None:
            await self._ready.wait()
        return self.inner is not None and self.refusal is None

    # --- hooks: wait until ready, refuse when not usable, else hand over -----------
    async def client_connected(self, client: Any) -> None:
        if not await self._usable():
            client.error = "tokn is not available"
            return
        local = client.sockname[0] if client.sockname else ""
        if not (is_loopback_peer(local) or ctx.options.tokn_insecure_allow_remote):
            # arrived on an address beyond loopback (e.g. before re-binding)
            client.error = "tokn: not listening beyond loopback"
            return
        self.guard.client_connected(client)

    def client_disconnected(self, client: Any) -> None:
        if self.inner is not None:
            self.guard.client_disconnected(client)
            self.inner.client_disconnected(client)

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        if not await self._usable():
            flow.response = http.Response.make(503, NOT_READY)
            return
        self.inner.http_connect(flow)

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if not await self._usable():
            flow.kill()
            return
        await self.inner.requestheaders(flow)

    def request(self, flow: http.HTTPFlow) -> None:
        if self.inner is not None:
            self.inner.request(flow)

    def server_connect(self, data: Any) -> None:
        if self.inner is not None:
            self.inner.server_connect(data)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if self.inner is not None:
            self.inner.responseheaders(flow)

    def response(self, flow: http.HTTPFlow) -> None:
        if self.inner is not None:
            self.inner.response(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        if self.inner is not None:
            self.inner.error(flow)

    async def done(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            await asyncio.sleep(0.1)
        if self.runtime is not None:
            await self.runtime.aclose()
