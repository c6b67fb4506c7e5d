"""tokn's routing inside stock ``mitmdump -s`` / ``mitmweb -s``.

The script loader gives us a running mitmproxy; this addon builds tokn's
runtime from the user's config, starts the listener that route mode hands
flows to on a private loopback port, points mitmproxy at tokn's CA and
allowlist, then adopts as its sub-addons exactly the list ``tokn proxy`` runs
(:func:`tokn.mitm.addons.proxy_addons`), so the same guard applies by
construction:

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
from mitmproxy import ctx, exceptions, hooks, http
from mitmproxy.proxy.mode_specs import ProxyMode, RegularMode

from tokn.config import ConfigError, load_config
from tokn.connlimits import is_loopback_peer
from tokn.mitm.addons import proxy_addons
from tokn.mitm.router import ROUTE_MODE_OPTION
from tokn.mitm.runner import mitm_options
from tokn.runtime import PROXY_KEEP_ALIVE, Runtime, bound_port, make_server
from tokn.server.guard import check_bind
from tokn.server.lan import old_h11_warning

log = logging.getLogger("tokn")

NOT_READY = b"tokn: the proxy is not available (see mitmproxy's event log)\n"


def listen_problem(modes: list[str], listen_host: str, *, allow_remote: bool,
                   api_key: str) -> str | None:
    """Why mitmproxy's listening setup may not run tokn, or ``None`` (pure)."""
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
    """The gate in front of tokn's addons: until tokn is up connections wait;
    if it could not start, they are refused (``AddonHalt``: no addon after
    this one sees them)."""

    def __init__(self) -> None:
        self.addons: list[Any] = []  # tokn's proxy addons, once tokn is up
        self.runtime: Runtime | None = None
        self.server: Any = None
        self.refusal: str | None = None
        self.defaulted_host = False
        self._ready: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    def load(self, loader: Any) -> None:
        loader.add_option(*ROUTE_MODE_OPTION)  # known before tokn starts (--set)
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
        try:
            if self.refusal:
                return
            cfg = load_config()
            self.runtime = Runtime(cfg)
            self.runtime.limiter.start()  # team keys' spent tokens, counted off the hot path
            self.server = make_server(self.runtime.app, "127.0.0.1", 0, "warning", cfg,
                                      keep_alive=PROXY_KEEP_ALIVE, lifespan="off")
            serve_task = asyncio.get_running_loop().create_task(self.server.serve())
            while not self.server.started:
                if serve_task.done():
                    raise RuntimeError("tokn's internal listener did not start")
                await asyncio.sleep(0.01)
            listener = ("127.0.0.1", bound_port(self.server))
            opts = mitm_options(cfg, host=ctx.options.listen_host, port=ctx.options.listen_port)
            for name in ("listen_host", "listen_port"):
                opts.pop(name)
            ctx.options.update(**opts)
            proxyserver = ctx.master.addons.get("proxyserver")
            addrs = proxyserver.listen_addrs()
            if self.defaulted_host and not all(is_loopback_peer(a[0]) for a in addrs):
                # mitmproxy 12 loads scripts after binding: bind again, on loopback
                await proxyserver.servers.update([])
                await proxyserver.setup_servers()
                addrs = proxyserver.listen_addrs()
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
            self._adopt(proxy_addons(self.runtime.proxy_services(listener)))
            log.warning("tokn: routing active (listener http://%s:%d, CA from tokn%s)",
                        *listener, ", proxy authentication on" if cfg.server.api_key else "")
        except Exception as exc:  # noqa: BLE001 - shown in mitmproxy's event log
            self.addons = []
            self._refuse(f"tokn addon failed to start: {exc}")
        finally:
            assert self._ready is not None
            self._ready.set()

    def _adopt(self, children: list[Any]) -> None:
        """Register tokn's addons as this one's children (mitmproxy's way for
        an addon that manages addons), configured with the options in force."""
        manager = ctx.master.addons
        for child in children:
            manager.register(child)
        self.addons = children
        for child in children:
            manager.invoke_addon_sync(child, hooks.ConfigureHook(set(ctx.options.keys())))
            manager.invoke_addon_sync(child, hooks.RunningHook())

    async def _usable(self) -> bool:
        if self._ready is not None:
            await self._ready.wait()
        return bool(self.addons) and self.refusal is None

    # --- the gate: hooks run here first, then in the children ---------------------
    async def client_connected(self, client: Any) -> None:
        if not await self._usable():
            client.error = "tokn is not available"
            raise exceptions.AddonHalt
        local = client.sockname[0] if client.sockname else ""
        if not (is_loopback_peer(local) or ctx.options.tokn_insecure_allow_remote):
            # arrived on an address beyond loopback (e.g. before re-binding)
            client.error = "tokn: not listening beyond loopback"
            raise exceptions.AddonHalt

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        if not await self._usable():
            flow.response = http.Response.make(503, NOT_READY)
            raise exceptions.AddonHalt

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if not await self._usable():
            flow.kill()
            raise exceptions.AddonHalt

    async def done(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            await asyncio.sleep(0.1)
        if self.runtime is not None:
            await self.runtime.aclose()
