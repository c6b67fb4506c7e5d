"""The accounts page and its write actions: enable, disable, test now, remove.

Each change is written to the config file under its lock
(:mod:`tokn.accounts`), then the running tokn takes the file up at once
(:meth:`tokn.runtime.Runtime.reload`, as the watcher would a moment later),
and the message says whether it did.  "Test now" sends one tiny chat
request through the pipeline, recorded like any other (front door
``dashboard``).
"""

from __future__ import annotations

import asyncio
import json
import time

from starlette.requests import Request
from starlette.responses import Response

from tokn import accounts
from tokn.config import ConfigError
from tokn.errors import ToknError
from tokn.pipeline import Inbound, Reply
from tokn.providers import ModelInfo, Provider
from tokn.server.ui_auth import Session
from tokn.ui.pages import Pages

TEST_PROMPT = "Reply with the single word OK."
TEST_SECS = 60.0
CHAT_FORMATS = frozenset({"chat", "messages", "responses"})


def test_model(provider: Provider, models: list[ModelInfo]) -> str | None:
    """A chat model of the account for a test request: not an embedding model,
    one Copilot does not bill as premium when its listing says so."""
    usable = [m for m in models if provider.model_formats(m) & CHAT_FORMATS
              and "embed" not in m.id and m.capabilities.get("type", "chat") == "chat"]
    if not usable:
        return provider.account.models[0] if provider.account.models else None

    def premium(m: ModelInfo) -> bool:
        billing = m.raw.get("billing")
        return bool(billing.get("is_premium")) if isinstance(billing, dict) else False

    return min(usable, key=premium).id


def reply_text(reply: Reply) -> str:
    """The answer's text, or the error message it carries."""
    try:
        data = json.loads(reply.body)
    except ValueError:
        return reply.body[:200].decode("utf-8", "replace")
    if not isinstance(data, dict):
        return str(data)[:200]
    if isinstance(data.get("error"), dict):
        return str(data["error"].get("message", ""))[:500]
    try:
        return str(data["choices"][0]["message"]["content"] or "")[:200]
    except (KeyError, IndexError, TypeError):
        return json.dumps(data)[:200]


class AccountActions:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.web = pages.web
        self.runtime = pages.runtime

    async def page(self, request: Request, session: Session) -> Response:
        return self.web.render(request, session, "accounts.html", page="accounts",
                               accounts=self.pages.account_rows({}),
                               in_pool=set(self.runtime.pool.providers))

    async def confirm_remove(self, request: Request, session: Session) -> Response:
        account_id = request.path_params["account_id"]
        if self.runtime.cfg.account(account_id) is None:
            return self.web.problem(request, session, 404, "No such account",
                                    f"no account {account_id!r} in the running config.")
        return self.web.render(request, session, "remove.html", page="accounts",
                               account_id=account_id)

    def _done(self, session: Session, kind: str, text: str) -> Response:
        session.flash.append((kind, text))
        return self.web.redirect("/ui/accounts")

    async def act(self, request: Request, session: Session, form: dict[str, str]) -> Response:
        account_id, what = request.path_params["account_id"], request.path_params["action"]
        if self.runtime.cfg.account(account_id) is None:
            return self._done(session, "error", f"no account {account_id!r} in the running "
                              "config.")
        if what == "test":
            kind, text = await self.test(account_id)
            return self._done(session, kind, text)
        try:
            if what in ("enable", "disable"):
                await asyncio.to_thread(accounts.set_enabled, account_id, what == "enable")
                if what == "disable":
                    self.pages.quotas.forget(account_id)
                return await self._applied(session, f"{account_id} {what}d")
            if what == "remove":
                if await asyncio.to_thread(accounts.remove, account_id) is None:
                    await self.runtime.reload("dashboard")
                    return self._done(session, "error", f"{account_id} is not in the config "
                                      "file any more (the running config now agrees).")
                self.pages.quotas.forget(account_id)
                return await self._applied(session, f"{account_id} removed from the config")
        except ConfigError as exc:
            return self._done(session, "error", f"{account_id}: {exc}")
        return self.web.problem(request, session, 404, "Unknown action",
                                f"accounts cannot {what!r}.")

    async def _applied(self, session: Session, done: str) -> Response:
        """After a change to the config file: take it up and say whether it was."""
        outcome = await self.runtime.reload("dashboard")
        if outcome is not None and outcome.applied:
            return self._done(session, "ok", f"{done} (config saved and applied).")
        why = outcome.message if outcome is not None else "no reload happened"
        return self._done(session, "error", f"{done} in the config file, but the running tokn "
                          f"did not apply it: {why}")

    async def test(self, account_id: str) -> tuple[str, str]:
        """One tiny chat request to the account through the pipeline."""
        pool = self.runtime.pool
        provider = pool.providers.get(account_id)
        if provider is None:
            return "error", f"{account_id} is disabled; enable it to test it."
        try:
            model = test_model(provider, await pool.models_of(provider))
        except ToknError as exc:
            return "error", f"test of {account_id}: cannot list its models: {exc.message}"
        if model is None:
            return "error", f"test of {account_id}: it lists no chat model to ask."
        inbound = Inbound(fmt="chat", headers={}, front_door="dashboard", route_mode="route",
                          client="dashboard", body={
                              "model": f"{account_id}/{model}", "stream": False,
                              "messages": [{"role": "user", "content": TEST_PROMPT}]})
        started = time.perf_counter()
        try:
            async with asyncio.timeout(TEST_SECS):
                reply = await self.runtime.pipeline.handle(inbound)
        except TimeoutError:
            return "error", f"test of {account_id} ({model}): no answer within {TEST_SECS:g} s"
        ms = (time.perf_counter() - started) * 1000
        text = reply_text(reply)
        summary = f"test of {account_id} ({model}): HTTP {reply.status} in {ms:,.0f} ms"
        return ("ok" if reply.status < 400 else "error"), f"{summary}: {text}"
