"""The dashboard's web plumbing: templates, static files, the gate around every
page and form (:mod:`tokn.server.ui_auth`), sign-in and sign-out.

Pages are Jinja2 templates with autoescaping on, so every value (model names,
error texts, bodies: all attacker-influenced) reaches the page as text.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, quote

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from tokn.server.ui_auth import PREFIX, SECURITY_HEADERS, Session, UiAuth, host_allowed
from tokn.ui.charts import compact

FORM_MAX_BYTES = 64 * 1024
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml"}
NAV = (("overview", "/ui/", "Overview"), ("usage", "/ui/usage", "Usage"),
       ("requests", "/ui/requests", "Requests"), ("accounts", "/ui/accounts", "Accounts"),
       ("config", "/ui/config", "Config"))

View = Callable[[Request, Session], Awaitable[Response]]
Action = Callable[[Request, Session, dict[str, str]], Awaitable[Response]]


def local_time(ts: float | None, with_date: bool = False) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S", time.localtime(ts))


def number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def millis(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def safe_next(value: str | None) -> str:
    """A redirect target inside the dashboard (never another site)."""
    if value and value.startswith(PREFIX + "/") and not value.startswith("//") \
            and "\\" not in value and all(32 < ord(c) < 127 for c in value):
        return value
    return PREFIX + "/"


class Web:
    def __init__(self, auth: UiAuth) -> None:
        self.auth = auth
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("tokn.ui", "templates"), autoescape=True,
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.env.filters.update(time=local_time, num=number, ms=millis, compact=compact)
        self.static: dict[str, tuple[bytes, str, str]] = {}
        for item in (resources.files("tokn.ui") / "static").iterdir():
            suffix = "." + item.name.rsplit(".", 1)[-1]
            if suffix in STATIC_TYPES:
                data = item.read_bytes()
                self.static[item.name] = (data, STATIC_TYPES[suffix],
                                          hashlib.sha256(data).hexdigest()[:12])
        self.env.globals["asset"] = lambda name: \
            f"{PREFIX}/static/{name}?v={self.static[name][2]}"

    # --- answers ---------------------------------------------------------------------
    @staticmethod
    def secured(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        response.headers.setdefault("cache-control", "no-store")
        return response

    def render(self, request: Request, session: Session | None, template: str, *,
               status: int = 200, page: str = "", **context: Any) -> Response:
        flash: list[tuple[str, str]] = []
        if session is not None:  # messages from the last action, shown once
            flash, session.flash = session.flash, []
        html = self.env.get_template(template).render(
            nav=NAV, page=page, flash=flash, csrf=session.csrf if session else "",
            signed_in=bool(session and session.authed and self.auth.key_set), **context)
        return self.secured(HTMLResponse(html, status))

    def problem(self, request: Request, session: Session | None, status: int, title: str,
                detail: str) -> Response:
        return self.render(request, session, "problem.html", status=status, title=title,
                           detail=detail)

    @staticmethod
    def redirect(to: str) -> Response:
        return Web.secured(RedirectResponse(to, 303))

    # --- the gate ---------------------------------------------------------------------
    def view(self, handler: View) -> Callable[[Request], Awaitable[Response]]:
        """A page anyone who may read the dashboard gets (GET)."""
        async def endpoint(request: Request) -> Response:
            found = self.auth.session(request)
            if not self.auth.may_read(request, found):
                if not host_allowed(request.headers.get("host"), self.auth.key_set):
                    return self.secured(Response(
                        "tokn's dashboard answers only at a loopback address such as "
                        "http://127.0.0.1:PORT/ui/ (or set [server].api_key).\n", 403,
                        media_type="text/plain"))
                target = request.url.path + (f"?{request.url.query}" if request.url.query
                                             else "")
                return self.redirect(f"{PREFIX}/login?next={quote(target, safe='')}")
            new = found is None
            if new:
                found = self.auth.start(authed=True)  # may read: key presented, or none set
            response = await handler(request, found)
            if new:
                self.auth.set_cookie(response, request, found)
            return response

        return endpoint

    def action(self, handler: Action, *, login: bool = False
               ) -> Callable[[Request], Awaitable[Response]]:
        """A form post (POST): same-origin, with the session's CSRF token, and
        (with a key set) signed in; see :meth:`UiAuth.refuse_write`."""
        async def endpoint(request: Request) -> Response:
            found = self.auth.session(request)
            form = await self._form(request)
            if isinstance(form, Response):
                return form
            reason = self.auth.refuse_write(request, found, form.get("csrf"), login=login)
            if reason is not None:
                return self.problem(request, None, 403, "Refused", reason)
            if found is None:  # a script holding the key: a session for this answer
                found = self.auth.start(authed=True)
            return await handler(request, found, form)

        return endpoint

    async def _form(self, request: Request) -> dict[str, str] | Response:
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if not media and request.headers.get("content-length", "0") == "0":
            return {}  # e.g. curl -X POST with the key in a header
        if media != "application/x-www-form-urlencoded":
            return self.secured(Response("the dashboard takes form posts only\n", 415,
                                         media_type="text/plain"))
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > FORM_MAX_BYTES:
                return self.secured(Response("form too large\n", 413, media_type="text/plain"))
        try:
            return dict(parse_qsl(body.decode("utf-8"), max_num_fields=50))
        except (UnicodeDecodeError, ValueError):
            return self.secured(Response("malformed form\n", 400, media_type="text/plain"))

    # --- sign-in ----------------------------------------------------------------------
    async def login_page(self, request: Request) -> Response:
        if not self.auth.key_set:
            return self.redirect(PREFIX + "/")
        if not host_allowed(request.headers.get("host"), True):
            return self.secured(Response("bad Host header\n", 400, media_type="text/plain"))
        found = self.auth.session(request)
        new = found is None
        if new:
            found = self.auth.start(authed=False)
        response = self.render(request, found, "login.html", next=safe_next(
            request.query_params.get("next")), error=None)
        if new:
            self.auth.set_cookie(response, request, found)
        return response

    async def login(self, request: Request, found: Session, form: dict[str, str]) -> Response:
        target = safe_next(form.get("next"))
        if not self.auth.key_set:
            return self.redirect(target)
        if not self.auth.login_ok(form.get("key", "")):
            return self.render(request, found, "login.html", status=401, next=target,
                               error="That is not the API key ([server].api_key).")
        self.auth.end(found)  # a new session id once signed in
        fresh = self.auth.start(authed=True)
        response = self.redirect(target)
        self.auth.set_cookie(response, request, fresh)
        return response

    async def logout(self, request: Request, found: Session, form: dict[str, str]) -> Response:
        self.auth.end(found)
        response = self.redirect(PREFIX + ("/login" if self.auth.key_set else "/"))
        self.auth.set_cookie(response, request, None)
        return response

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.static:
            return self.secured(Response("not found\n", 404, media_type="text/plain"))
        data, media, _ = self.static[name]
        response = Response(data, media_type=media)
        response.headers["cache-control"] = "public, max-age=31536000, immutable"
        return self.secured(response)
