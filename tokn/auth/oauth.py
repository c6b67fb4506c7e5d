"""A browser sign-in that comes back to tokn: OAuth authorization code with
PKCE (RFC 7636) and a one-shot loopback redirect (RFC 8252).

::

    verifier, challenge = pkce_pair()
    query, redirect_uri = await browser_sign_in(
        lambda redirect_uri: f"{auth_url}?...&redirect_uri={redirect_uri}&code_challenge=...",
        name="Kiro", say=print, open_browser=None, timeout=600)
    # then exchange query["code"] (with the verifier) at the token endpoint

Kiro's social sign-in uses it; so can any provider whose sign-in is a browser
page redirecting to ``http://localhost:PORT/...``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

from tokn.errors import ToknError

REDIRECT_PATH = "/oauth/callback"


def pkce_pair() -> tuple[str, str]:
    """A PKCE ``(code_verifier, S256 code_challenge)``."""
    verifier = secrets.token_urlsafe(64)[:96]
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


class LoopbackCallback:
    """A one-shot HTTP server on 127.0.0.1 that catches the redirect's query."""

    def __init__(self, path: str = REDIRECT_PATH, name: str = "") -> None:
        self.path = path
        self.name = name
        self.result: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await asyncio.wait_for(reader.readline(), 10)).decode("latin-1")
            while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
                pass
            target = line.split(" ")[1] if line.count(" ") >= 2 else "/"
            parts = urlsplit(target)
            if parts.path != self.path:
                body, status = b"not found", "404 Not Found"
            else:
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                ok = "code" in query and "error" not in query
                what = f"tokn: {self.name} sign-in".strip().encode()
                body = (b"<html><body><h3>" + what + b" complete.</h3>You can close "
                        b"this tab.</body></html>" if ok else
                        b"<html><body><h3>" + what + b" failed.</h3></body></html>")
                status = "200 OK"
                if not self.result.done():
                    self.result.set_result(query)
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                         + body)
            await writer.drain()
        except (OSError, TimeoutError, IndexError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()


async def browser_sign_in(make_url: Callable[[str], str], *, name: str,
                          say: Callable[[str], None],
                          open_browser: Callable[[str], Awaitable[None]] | None,
                          timeout: float, path: str = REDIRECT_PATH,
                          via: str = "") -> tuple[dict[str, str], str]:
    """Show (and open) the sign-in page ``make_url(redirect_uri)``; wait up to
    ``timeout`` seconds for the browser to come back.  Returns the redirect's
    query and the ``redirect_uri`` (the token exchange repeats it).  An
    ``error`` in the redirect is a :class:`ToknError`; the caller checks
    ``state``.  ``via``: the identity provider named to the person (Google)."""
    callback = LoopbackCallback(path, name)
    await callback.start()
    try:
        redirect_uri = f"http://localhost:{callback.port}{path}"
        url = make_url(redirect_uri)
        say(f"Open this URL to sign in to {name}{' with ' + via if via else ''}:\n{url}")
        waiter = asyncio.ensure_future(asyncio.wait_for(asyncio.shield(callback.result),
                                                        timeout))
        if open_browser is not None:
            await asyncio.gather(open_browser(url), return_exceptions=True)
        try:
            query = await waiter
        except TimeoutError:
            raise ToknError("no sign-in came back in time; run the login again.",
                            status=408, code="expired_token") from None
    finally:
        await callback.close()
    if query.get("error"):
        raise ToknError(f"{name} sign-in failed: {query.get('error')} "
                        f"{query.get('error_description', '')}".strip(), status=403,
                        code="access_denied")
    return query, redirect_uri
