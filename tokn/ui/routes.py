"""The dashboard's routes on the listener, under ``/ui/``.

============================  ======  ===========================================
path                          method  what
============================  ======  ===========================================
``/ui/``                      GET     overview: accounts, health, quotas, today
``/ui/usage``                 GET     charts and tables over a range
``/ui/requests``              GET     recent requests, live (``/ui/events``)
``/ui/requests/{id}``         GET     one request's attempts, timings, bodies
``/ui/accounts``              GET     accounts with their actions
``/ui/accounts/{id}/{action}`` POST   enable, disable, test, remove
``/ui/config``                GET     the running config, secrets masked
``/ui/login``, ``/ui/logout``  both   sign-in with the API key (when one is set)
============================  ======  ===========================================
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from tokn.server.ui_auth import PREFIX, UiAuth
from tokn.ui.account_actions import AccountActions
from tokn.ui.data import UsageReader
from tokn.ui.live import Live
from tokn.ui.pages import Pages
from tokn.ui.quotas import QuotaCache
from tokn.ui.web import Web

ACTIONS = "{action:str}"


def routes(runtime: Any) -> list[Route]:
    web = Web(UiAuth(lambda: runtime.state.api_key))
    pages = Pages(web, runtime, UsageReader(runtime.usage), QuotaCache(runtime.pool))
    accounts = AccountActions(pages)
    live = Live(web, runtime)
    get, post = ["GET"], ["POST"]

    async def to_overview(request: Any) -> Any:
        return web.redirect(PREFIX + "/")

    async def unknown(request: Any, session: Any) -> Any:
        return web.problem(request, session, 404, "Not found",
                           f"the dashboard has no page {request.url.path!r}.")

    return [
        Route(PREFIX, to_overview, methods=get),
        Route(PREFIX + "/", web.view(pages.overview), methods=get),
        Route(PREFIX + "/usage", web.view(pages.usage), methods=get),
        Route(PREFIX + "/requests", web.view(pages.requests), methods=get),
        Route(PREFIX + "/requests/{request_id:str}", web.view(pages.request_detail),
              methods=get),
        Route(PREFIX + "/events", web.view(live.events), methods=get),
        Route(PREFIX + "/accounts", web.view(accounts.page), methods=get),
        Route(PREFIX + "/accounts/{account_id:str}/remove", web.view(accounts.confirm_remove),
              methods=get),
        Route(PREFIX + "/accounts/{account_id:str}/" + ACTIONS, web.action(accounts.act),
              methods=post),
        Route(PREFIX + "/config", web.view(pages.config_page), methods=get),
        Route(PREFIX + "/login", web.login_page, methods=get),
        Route(PREFIX + "/login", web.action(web.login, login=True), methods=post),
        Route(PREFIX + "/logout", web.action(web.logout), methods=post),
        Route(PREFIX + "/static/{name:str}", web.asset, methods=get),
        Route(PREFIX + "/{rest:path}", web.view(unknown), methods=get),
    ]
