"""Assemble and run tokn's long-lived parts in one event loop.

:class:`Runtime` owns the outbound HTTP client, the pool, the usage store and
the pipeline; :func:`serve` runs the listener (uvicorn) and, when asked, the
MITM proxy beside it, owns SIGINT/SIGTERM and stops both cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import certifi
import httpx

from tokn import keys, limits, live, memory, ports
from tokn.auth.tokens import local_tokens, use_store
from tokn.config import Config
from tokn.connlimits import ConnectionCaps, fd_budget, raise_fd_limit
from tokn.errors import ToknError
from tokn.keys import KeyRing
from tokn.limits import Counters, Limiter, LocalCounters
from tokn.outbound import Client, ConnectionPool
from tokn.pipeline import Pipeline
from tokn.pool import Pool
from tokn.recorder import Recorder
from tokn.reload import Outcome
from tokn.server import lan, usage_routes
from tokn.server.app import AppState, create_app
from tokn.server.httpguard import policy_from
from tokn.server.protocol import ClientLimits, guarded_protocol
from tokn.shared import missing_extra
from tokn.ui import routes as ui_routes
from tokn.usage import UsageStore

if TYPE_CHECKING:
    from tokn.mitm.runner import ProxyRunner
    from tokn.mitm.services import ProxyServices
    from tokn.shared.link import Link
    from tokn.shared.pg_usage import PgUsageStore

log = logging.getLogger("tokn")

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def upstream_ssl_context(cfg: Config) -> ssl.SSLContext:
    """System roots + certifi (+ ``[proxy_mode].upstream_ca_bundle``); never unverified."""
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cafile=certifi.where())
    extra = cfg.proxy_mode.upstream_ca_bundle
    if extra:
        try:
            ctx.load_verify_locations(cafile=os.path.expanduser(extra))
        except (OSError, ssl.SSLError) as exc:
            raise ToknError(f"[proxy_mode].upstream_ca_bundle {extra!r} cannot be loaded: "
                            f"{exc}; fix the path or unset it.") from exc
    return ctx


def outbound_proxy(cfg: Config, env: dict[str, str] | None = None) -> str | None:
    """The proxy tokn's own upstream calls go through.

    ``[proxy].url`` wins; with ``[proxy].system`` the environment's
    ``HTTPS_PROXY`` is used, unless it points at tokn's own proxy (a shell that
    ran ``tokn proxy env`` must not make tokn loop through itself).
    """
    if cfg.proxy.url:
        return cfg.proxy.url
    if not cfg.proxy.system:
        return None
    env = os.environ if env is None else env
    value = env.get("HTTPS_PROXY") or env.get("https_proxy") or env.get("ALL_PROXY")
    if not value:
        return None
    parts = urlsplit(value if "://" in value else f"http://{value}")
    if parts.hostname in LOOPBACK and parts.port == cfg.proxy_mode.port:
        return None
    return value


# Outbound connections open at once (every concurrent stream holds one), and
# idle ones kept per upstream; within the process's file descriptors (fd_budget)
OUTBOUND_CONNECTIONS = 1000
OUTBOUND_IDLE = 100


def make_client(cfg: Config,
                transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """tokn's one outbound client.  Its transport is ``transport`` (tests), else
    httpx's proxy transport when ``[proxy]`` applies (hosts in ``no_proxy`` and
    everything else go through tokn's :class:`~tokn.outbound.ConnectionPool`)."""
    proxy = None if transport else outbound_proxy(cfg)
    verify = upstream_ssl_context(cfg)
    mounts = None
    if proxy and cfg.proxy.no_proxy:
        mounts = {f"all://{host}": None for host in cfg.proxy.no_proxy}
    if transport is None:
        transport = ConnectionPool(verify, max_connections=OUTBOUND_CONNECTIONS,
                                   max_idle=OUTBOUND_IDLE)
    limits = cfg.timeouts
    # API calls set their own (per account); this bounds the rest: model
    # listings, token exchanges and refreshes, plan and quota look-ups
    return Client(
        transport=transport, proxy=proxy, mounts=mounts, trust_env=False,
        verify=verify,
        timeout=httpx.Timeout(connect=limits.connect_secs, read=limits.first_byte_secs,
                              write=limits.first_byte_secs, pool=limits.connect_secs),
        limits=httpx.Limits(max_connections=OUTBOUND_CONNECTIONS,
                            max_keepalive_connections=OUTBOUND_IDLE),
    )


class Runtime:
    """The shared pool, pipeline and usage store of one tokn process."""

    def __init__(self, cfg: Config, *, api_key: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 usage: bool | None = None) -> None:
        self.cfg = cfg
        problem = missing_extra(cfg)
        if problem:
            raise ToknError(problem)
        self.client = make_client(cfg, transport)
        self.link: Link | None = None
        shared_pool = None
        if cfg.state.url:  # replicas share health, sticky sessions and tokens in Redis
            from tokn.shared.link import Link
            from tokn.shared.pool_state import RedisPool
            from tokn.shared.tokens import RedisTokens

            self.link = Link(cfg.state.url, cfg.state.timeout_secs)
            use_store(RedisTokens(self.link, local_tokens()))
            shared_pool = RedisPool(self.link)
        self.pool = Pool(self.config, self.client, shared=shared_pool)
        enabled = cfg.usage.enabled if usage is None else usage
        self.usage: UsageStore | PgUsageStore | None = None
        if enabled and cfg.usage.url:  # replicas write one PostgreSQL table
            from tokn.shared.pg_usage import PgUsageStore

            self.usage = PgUsageStore(cfg.usage.url, cfg.usage.buffer_rows)
        elif enabled:
            self.usage = UsageStore()
        # team mode: people's keys (re-read when the file changes) and their limits
        self.keys = KeyRing(keys.default_path())
        counters: Counters = LocalCounters(limits.default_path())
        if self.link is not None:  # one count per key across replicas
            from tokn.shared.counters import RedisCounters

            counters = RedisCounters(self.link, counters)
        self.limiter = Limiter(counters)
        self.recorder = Recorder(self.usage, self.config, self.limiter)
        self.pipeline = Pipeline(self.config, self.pool, self.recorder)
        self.state = AppState(self.pipeline, api_key if api_key is not None else cfg.server.api_key,
                              policy=policy_from(cfg.server), keys=self.keys,
                              limiter=self.limiter)
        # the listener's routes beyond the API: usage, LAN bootstrap, the dashboard
        self.state.extra_routes = [*usage_routes.routes(self), *lan.routes(self),
                                   *ui_routes.routes(self)]
        self.app = create_app(self.state)
        self.api_url = ""
        self.proxy_url = ""
        self.proxy: ProxyRunner | None = None  # while the proxy runs
        # live config (tokn.live): the digest of the file content last taken up
        # or refused, who hears of each reload, one reload at a time
        self.config_digest = ""
        self.on_reload: Callable[[Outcome, str], None] | None = None
        self._reloading = asyncio.Lock()

    def config(self) -> Config:
        """The config in force (for parts that must not keep a copy)."""
        return self.cfg

    async def reload(self, source: str, *, force: bool = True) -> Outcome | None:
        """Re-read the config file and take it up (:func:`tokn.live.reload`);
        the outcome also goes to ``on_reload``.  None: the watcher found the
        content it already knew."""
        async with self._reloading:
            outcome = await live.reload(self, source, force=force)
        if outcome is not None and self.on_reload is not None:
            self.on_reload(outcome, source)
        return outcome

    def proxy_services(self, listener: tuple[str, int]) -> ProxyServices:
        """What the proxy's addons use, with route mode handing flows to ``listener``."""
        from tokn.mitm.services import ProxyServices

        return ProxyServices(config=self.config, pool=self.pool, recorder=self.recorder,
                             drain=self.state.drain, internal_secret=self.state.internal_secret,
                             api_key=self.state.api_key, keys=self.keys, limiter=self.limiter,
                             listener=listener,
                             caps=client_caps(self.cfg), app=self.app)

    async def aclose(self) -> None:
        await self.pool.aclose()
        await self.client.aclose()
        if self.usage is not None:
            await asyncio.to_thread(self.usage.close)
        await self.limiter.aclose()  # spent tokens still queued: counted (Redis or file)
        if self.link is not None:
            use_store(None)
            await self.link.aclose()


@dataclass
class Bound:
    """Where the running servers listen (ports resolved when 0 was asked)."""

    api_url: str = ""
    proxy_url: str = ""


def client_caps(cfg: Config) -> ConnectionCaps:
    """One front door's caps for peers beyond loopback (within the fd budget)."""
    total = min(cfg.server.max_connections, fd_budget(raise_fd_limit()))
    return ConnectionCaps(total=total, per_client=min(cfg.server.max_client_connections, total))


# The proxy's own listener never closes an idle connection: mitmproxy reuses
# its connection to the listener for the next request on the same client
# tunnel, and a server-side keep-alive timeout firing just as that request is
# sent answers it with "502 server closed connection".  mitmproxy closes these
# connections itself, with the client's.
PROXY_KEEP_ALIVE = 30 * 86400.0


def make_server(app: Any, host: str, port: int, log_level: str, cfg: Config, *,
                keep_alive: float | None = None, lifespan: str = "on") -> Any:
    """A uvicorn server for ``app`` with tokn's limits; tokn owns the signals."""
    import uvicorn

    class _Server(uvicorn.Server):
        # uvicorn re-raises captured signals after its own shutdown, which
        # would kill the process before the proxy stops: tokn owns signals.
        def install_signal_handlers(self) -> None:  # uvicorn < 0.29
            pass

        def capture_signals(self):  # uvicorn >= 0.29
            import contextlib

            return contextlib.nullcontext()

    limits = ClientLimits(client_caps(cfg), header_timeout=cfg.server.header_timeout_secs,
                          body_timeout=cfg.server.body_timeout_secs)
    # tokn drains in-flight requests itself (serve); uvicorn's own grace is a backstop
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                            access_log=False, lifespan=lifespan,
                            # no X-Forwarded-* rewriting: tokn is nobody's backend (and
                            # it is one ASGI layer less on every request)
                            proxy_headers=False,
                            timeout_keep_alive=keep_alive or cfg.server.keep_alive_secs,
                            timeout_graceful_shutdown=int(cfg.server.drain_secs) + 5,
                            http=guarded_protocol(limits), ws="wsproto",
                            ws_max_size=int(cfg.server.max_body_mb * 1024 * 1024))
    return _Server(config)


def _quiet_cancelled(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Python 3.11's stream callback re-raises the CancelledError of a proxy
    connection cancelled at shutdown; that is not an error worth a traceback."""
    if isinstance(context.get("exception"), asyncio.CancelledError):
        return
    loop.default_exception_handler(context)


def bound_port(server: Any) -> int:
    """The port a started uvicorn server listens on."""
    for srv in server.servers:
        for sock in srv.sockets:
            return sock.getsockname()[1]
    raise ToknError("the listener did not bind", status=500)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# SIGHUP asks for a reload (tokn.reload); it never stops tokn
RELOAD_SIGNALS = () if sys.platform == "win32" else (signal.SIGHUP,)


async def serve(runtime: Runtime, *, host: str, port: int, with_proxy: bool = False,
                proxy_host: str = "127.0.0.1", proxy_port: int = 4142,
                proxy_route_mode: str | None = None, listener_public: bool = True,
                on_ready: Callable[[Bound], None] | None = None,
                on_reload: Callable[[Outcome, str], None] | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Run the listener (and the proxy) until SIGINT/SIGTERM or ``stop`` is set,
    then drain: stop accepting, let what is in flight finish for up to
    ``[server].drain_secs`` (a second signal cuts that short), end the rest
    with an error its client understands, and stop.  Once serving, the config
    file is watched and taken up when it changes (:mod:`tokn.live`); SIGHUP
    forces that (:meth:`Runtime.reload`); each outcome goes to ``on_reload``
    with who asked ("file", "SIGHUP", "dashboard").

    A port that is taken raises :class:`tokn.ports.PortInUse` before anything
    listens."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_quiet_cancelled)
    stop = stop or asyncio.Event()
    hurry = asyncio.Event()
    # bound before anything starts: a taken port is one clear error, for either door
    sockets: list[Any] = []
    try:
        sockets = ports.bind("the listener", host, port)
        if with_proxy:
            ports.check_free("the proxy", proxy_host, proxy_port)
    except BaseException:
        for sock in sockets:
            sock.close()
        await runtime.aclose()
        raise

    def on_signal() -> None:
        (hurry if stop.is_set() else stop).set()

    reloads: set[asyncio.Task] = set()
    runtime.on_reload = on_reload

    def on_hup() -> None:
        task = asyncio.ensure_future(runtime.reload("SIGHUP"))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    handlers = [(sig, on_signal) for sig in STOP_SIGNALS] + \
        [(sig, on_hup) for sig in RELOAD_SIGNALS]
    for sig, handler in handlers:
        try:
            loop.add_signal_handler(sig, handler)
        except (NotImplementedError, RuntimeError):
            pass
    level = runtime.cfg.logging.level if runtime.cfg.logging.level != "info" else "warning"
    server = make_server(runtime.app, host, port, level, runtime.cfg)
    servers = [server]
    tasks = [asyncio.create_task(server.serve(sockets=sockets))]
    proxy = None
    try:
        await _started(server, tasks[0], f"the listener could not start on {host}:{port}")
        api_port = bound_port(server)
        runtime.pool.start_background_refresh()
        runtime.limiter.start()
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        bound = Bound(api_url=f"http://{shown}:{api_port}" if listener_public else "")
        if with_proxy:
            from tokn.mitm.runner import ProxyRunner

            internal = make_server(runtime.app, "127.0.0.1", 0, level, runtime.cfg,
                                   keep_alive=PROXY_KEEP_ALIVE, lifespan="off")
            servers.append(internal)
            tasks.append(asyncio.create_task(internal.serve()))
            await _started(internal, tasks[-1], "the proxy's listener could not start")
            proxy = ProxyRunner(runtime.proxy_services(("127.0.0.1", bound_port(internal))),
                                host=proxy_host, port=proxy_port, route_mode=proxy_route_mode)
            await proxy.start()
            runtime.proxy = proxy
            bound.proxy_url = proxy.url
        runtime.api_url = bound.api_url  # "" when the listener is private
        runtime.proxy_url = bound.proxy_url
        if on_ready:
            on_ready(bound)
        watcher = asyncio.create_task(live.watch(runtime))
        reloads.add(watcher)
        watcher.add_done_callback(reloads.discard)
        memory.settle()
        if memory.SUPPORTED:  # after a burst, its memory goes back to the system
            trimmer = asyncio.create_task(memory.trim_after_bursts(
                lambda: bool(runtime.state.drain.live)))
            reloads.add(trimmer)
            trimmer.add_done_callback(reloads.discard)
        await stop.wait()
        await _drain(runtime, servers, proxy, hurry)
    finally:
        for sig, _ in handlers:
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError):
                pass
        for task in list(reloads):
            task.cancel()
        runtime.proxy = None
        if proxy is not None:
            await proxy.stop()
        for srv in servers:
            srv.should_exit = True
        for task in tasks:
            try:
                await asyncio.wait_for(task, 5)
            except (TimeoutError, Exception):  # noqa: BLE001 - shutting down anyway
                task.cancel()
        await runtime.aclose()


async def _started(server: Any, task: asyncio.Task, failure: str) -> None:
    while not server.started:
        if task.done():
            exc = task.exception()
            raise ToknError(failure + (f": {exc}" if exc else " (is the port in use?)"),
                            status=500)
        await asyncio.sleep(0.01)


async def _drain(runtime: Runtime, servers: list[Any], proxy: Any,
                 hurry: asyncio.Event) -> None:
    """Stop accepting; give in-flight requests ``[server].drain_secs``; cut the rest."""
    drain = runtime.state.drain
    drain.draining = True
    secs = drain.secs = runtime.cfg.server.drain_secs
    if proxy is not None:
        await proxy.stop_listening()
    for server in servers:
        server.should_exit = True  # uvicorn closes its socket and idle connections
    if drain.live:
        log.warning("stopping: no new requests; waiting up to %g s for %d in flight "
                    "(signal again to stop now)", secs, len(drain.live))
    if await drain.wait(secs, hurry):
        return
    cut = drain.cut()
    log.warning("stopping: ending %d request(s) still in flight after %g s "
                "([server] drain_secs)", cut, secs)
    await drain.wait(2.0)  # their error events and rows
