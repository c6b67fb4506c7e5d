"""tokn's routing inside stock ``mitmdump -s`` / ``mitmweb -s``.

The script loader gives us a running mitmproxy; this addon builds tokn's
runtime from the user's config, starts the listener that route mode hands
flows to on a private loopback port, points mitmproxy at tokn's CA and
allowlist, then delegates every hook to :class:`~tokn.mitm.addon.ToknAddon`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mitmproxy import ctx

log = logging.getLogger("tokn")

DELEGATED_SYNC = ("http_connect", "client_disconnected", "server_connect", "responseheaders",
                  "response", "error")


class StandaloneAddon:
    def __init__(self) -> None:
        self.inner: Any = None
        self.runtime: Any = None
        self.server: Any = None
        self._ready: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    def load(self, loader: Any) -> None:
        loader.add_option("tokn_route_mode", str | None, None,
                          "Default route mode for intercepted flows: route, switch or "
                          "passthrough (default: [proxy_mode].route_mode).")

    def running(self) -> None:
        self._ready = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._start())

    async def _start(self) -> None:
        from tokn.config import load_config
        from tokn.mitm.addon import ToknAddon
        from tokn.mitm.modes import check_mode
        from tokn.mitm.runner import mitm_options
        from tokn.runtime import PROXY_KEEP_ALIVE, Runtime, _bound_port, _make_uvicorn

        try:
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
            self.inner = ToknAddon(self.runtime, url, route_mode=mode or None)
            proxyserver = ctx.master.addons.get("proxyserver")
            self.inner.self_addrs = {(a[0], a[1]) for a in proxyserver.listen_addrs()}
            log.warning("tokn: routing active (listener %s, CA from tokn)", url)
        except Exception as exc:  # noqa: BLE001 - shown in mitmproxy's event log
            logging.getLogger("mitmproxy").error(f"tokn addon failed to start: {exc}")
        finally:
            assert self._ready is not None
            self._ready.set()

    async def request(self, flow: Any) -> None:
        if self._ready is not None:
            await self._ready.wait()
        if self.inner is not None:
            await self.inner.request(flow)

    def __getattr__(self, name: str) -> Any:
        if name in DELEGATED_SYNC:
            def hook(*args: Any) -> None:
                if self.inner is not None:
                    getattr(self.inner, name)(*args)
            return hook
        raise AttributeError(name)

    async def done(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            await asyncio.sleep(0.1)
        if self.runtime is not None:
            await self.runtime.aclose()
