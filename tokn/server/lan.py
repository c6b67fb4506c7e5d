"""LAN mode routes on the listener: ``/-/lan/bootstrap.json``, ``/-/lan/ca.crt``,
``/-/lan/env?shell=...``.

* ``bootstrap.json`` and ``ca.crt`` are public: they hold no secret (the CA
  *certificate* only; the private key is never read here, whatever the path).
* ``env`` needs the API key when one is set (``Authorization: Bearer KEY`` or
  ``x-api-key: KEY``; never in the URL); the script it returns carries that
  key in the proxy URL (``http://tokn:KEY@host:port``) and ``OPENAI_API_KEY``,
  so it is only ever sent to a caller that already presented the key.  A
  person's key (team mode) gets a script with that key only, its name as the
  proxy user (``http://alice:KEY@host:port``).

Every URL is built from the request's ``Host`` header after strict validation
(:func:`tokn.lan_env.parse_host`); anything else is a 400.  Requests the
proxy port forwards here (plain GETs under ``/-/lan/``) carry
``x-forwarded-port``: URLs then stay on the proxy port.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tokn import lan_env
from tokn.errors import ToknError
from tokn.identity import presented_key
from tokn.lan_host import guess_lan_host
from tokn.server.app import denied

NO_STORE = {"cache-control": "no-store", "x-content-type-options": "nosniff"}
ENDPOINTS = "GET /-/lan/bootstrap.json, /-/lan/ca.crt, /-/lan/env?shell=sh|bash|zsh|fish|pwsh"


def _bad(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error",
                                   "code": code}}, status, headers=NO_STORE)


def ca_certificate(runtime: Any) -> tuple[bytes, str]:
    """``(pem, fingerprint)`` of tokn's CA certificate: exactly one
    ``CERTIFICATE`` block re-serialised from ``ca.crt`` (so nothing else that
    might sit in that file can leak), and its SHA-256 over the DER."""
    from tokn import ca

    files = ca.ensure_ca(runtime.cfg)
    blocks = ca.split_pem_certs(files.cert_path.read_bytes())
    if not blocks:
        raise ToknError(f"{files.cert_path} holds no certificate; run `tokn proxy ca "
                        "regenerate`.", status=500, code="ca_corrupt")
    pem = blocks[0] + b"\n"
    if b"PRIVATE KEY" in pem:  # impossible for a CERTIFICATE block; belt and braces
        raise ToknError("refusing to serve the CA: key material found", status=500)
    return pem, ca.fingerprint_sha256(pem)


def _ports(runtime: Any, request: Request, hp: lan_env.HostPort) -> tuple[int, int | None,
                                                                         int | None]:
    """``(request_port, api_port, proxy_port)`` as the client should use them."""
    request_port = hp.port or 80
    proxy_port = lan_env.port_of(runtime.proxy_url) or runtime.cfg.proxy_mode.port
    api_url = runtime.api_url  # "" when the listener is not public
    forwarded = lan_env.parse_port(request.headers.get("x-forwarded-port"))
    if forwarded is not None and len(request.headers.getlist("x-forwarded-port")) == 1:
        # Reached through the proxy port: helper URLs stay on it.
        return forwarded, lan_env.port_of(api_url), forwarded
    api_port = request_port if api_url else None
    return request_port, api_port, proxy_port


def _host(request: Request) -> lan_env.HostPort:
    values = request.headers.getlist("host")
    if len(values) != 1:
        raise lan_env.BadHost("the request must carry exactly one Host header")
    return lan_env.parse_host(values[0])


def _ctx(runtime: Any, request: Request) -> tuple[lan_env.HostPort, int, int | None,
                                                  int | None] | Response:
    try:
        hp = _host(request)
    except lan_env.BadHost as exc:
        return _bad(400, f"{exc}; address tokn as http://HOST:PORT/ (a host name or IP "
                    "literal, [IPv6] in brackets).", "bad_host")
    request_port, api_port, proxy_port = _ports(runtime, request, hp)
    return hp, request_port, api_port, proxy_port


def routes(runtime: Any) -> list[Route]:
    state = runtime.state

    def key_required() -> bool:
        return bool(state.api_key)

    async def bootstrap(request: Request) -> Response:
        ctx = _ctx(runtime, request)
        if isinstance(ctx, Response):
            return ctx
        hp, request_port, api_port, proxy_port = ctx
        _, fingerprint = ca_certificate(runtime)
        return JSONResponse(lan_env.bootstrap(
            hp, request_port=request_port, api_port=api_port, proxy_port=proxy_port,
            ca_sha256=fingerprint, key_required=key_required()), headers=NO_STORE)

    async def ca_crt(request: Request) -> Response:
        pem, fingerprint = ca_certificate(runtime)
        return Response(pem, media_type="application/x-pem-file", headers={
            **NO_STORE, "content-disposition": 'attachment; filename="tokn-ca.crt"',
            "x-tokn-ca-sha256": fingerprint})

    async def env(request: Request) -> Response:
        identity = state.identity(request.headers)
        if identity is None:
            return denied(request)
        shell = request.query_params.get("shell", "sh")
        if shell not in lan_env.SHELLS:
            return _bad(400, f"unknown shell {shell!r}; use shell= one of "
                        f"{', '.join(lan_env.SHELLS)}.", "bad_shell")
        ctx = _ctx(runtime, request)
        if isinstance(ctx, Response):
            return ctx
        hp, request_port, api_port, proxy_port = ctx
        _, fingerprint = ca_certificate(runtime)
        # The key goes into the script only when this request presented it (the
        # admin key, or a person's own: never anyone else's).
        presented = presented_key(request.headers)
        person = not identity.admin
        key = presented if (state.api_key and identity.name == "admin") or person else None
        here = hp.origin(request_port)
        spec = lan_env.EnvSpec(
            hp=lan_env.HostPort(hp.host, request_port), ca_cert_url=here + lan_env.CA_PATH,
            ca_sha256=fingerprint, proxy_url=hp.origin(proxy_port) if proxy_port else None,
            api_url=hp.origin(api_port) if api_port else None, api_key=key,
            **({"proxy_user": identity.name} if person else {}))
        return Response(lan_env.env_script(shell, spec),
                        media_type="text/plain; charset=utf-8", headers=NO_STORE)

    async def unknown(request: Request) -> Response:
        # Never echo the path, never look at the file system.
        return _bad(404, f"No such LAN endpoint. tokn serves: {ENDPOINTS}.", "not_found")

    get = ["GET"]
    return [
        Route(lan_env.BOOTSTRAP_PATH, bootstrap, methods=get),
        Route(lan_env.CA_PATH, ca_crt, methods=get),
        Route(lan_env.ENV_PATH, env, methods=get),
        Route("/-/lan", unknown),
        Route("/-/lan/{rest:path}", unknown),
    ]


def startup_lines(runtime: Any, bound: Any, host: str, proxy_host: str | None = None) -> list[str]:
    """Plain-text lines ``tokn serve`` prints at start when it listens beyond
    loopback: the CA fingerprint and the bootstrap URL.  Empty on loopback.
    Print with ``markup=False`` (IPv6 literals contain brackets)."""
    from tokn.server.guard import is_loopback

    api_url, proxy_url = bound.api_url, bound.proxy_url
    public_api = bool(api_url) and not is_loopback(host)
    public_proxy = bool(proxy_url) and proxy_host is not None and not is_loopback(proxy_host)
    if not (public_api or public_proxy):
        return []
    _, fingerprint = ca_certificate(runtime)
    shown_host = host if public_api else (proxy_host or host)
    if shown_host in ("0.0.0.0", "::", "", "*"):
        shown_host = guess_lan_host()
    port = lan_env.port_of(api_url if public_api else proxy_url)
    origin = lan_env.HostPort(shown_host.strip("[]"), port).origin()
    import h11

    lines = [
        f"LAN mode: tokn CA SHA-256 fingerprint {fingerprint}",
        f"LAN bootstrap: {origin}{lan_env.BOOTSTRAP_PATH}",
        "Colleagues: run `tokn lan url` here for the one-line setup (it needs the API key) "
        "and compare the fingerprint the script prints.",
    ]
    warning = old_h11_warning(h11.__version__)
    return lines + [warning] if warning else lines


def old_h11_warning(version: str) -> str | None:
    """The start-up line for LAN mode on h11 < 0.16 (what pip resolves with
    mitmproxy 11 on Python 3.11), else ``None``."""
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return None
    if (major, minor) >= (0, 16):
        return None
    return (f"LAN mode warning: h11 {version} (pinned by mitmproxy 11, which Python 3.11 gets) "
            "parses chunked bodies leniently (CVE-2025-43859, request smuggling); run tokn on "
            "Python >= 3.12 (mitmproxy 12, h11 0.16) to share it on a network.")
