"""A model listing whose connection is dropped is asked once more (a GET is
safe to repeat): a reset socket does not fail the request waiting on it, and
a listing that keeps failing still fails, naming the account."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.fakes.base import Exchange
from tests.fakes.llm import FakeLLM
from tests.helpers import account, write_config
from tokn.config import load_config
from tokn.errors import ToknError
from tokn.providers import provider_class


class ResettingLLM(FakeLLM):
    """Resets the connection of the first ``resets`` model listings."""

    def __init__(self, resets: int, **kw) -> None:
        super().__init__(**kw)
        self.resets = resets
        self.reset_count = 0

    def route(self, ex: Exchange) -> bool:
        if ex.req.method == "GET" and ex.req.path.endswith("/models") \
                and self.reset_count < self.resets:
            self.reset_count += 1
            ex.drop(rst=True)
            return True
        return super().route(ex)


def _models(fake: FakeLLM) -> list[str]:
    write_config({"accounts": [account("pool", "openai-compatible", base_url=fake.url + "/v1",
                                       api_key="sk-x")]})
    acc = load_config().accounts[0]

    async def go() -> list[str]:
        async with httpx.AsyncClient() as client:
            provider = provider_class("openai-compatible")(acc, client)
            return [m.id for m in await provider.models()]

    return asyncio.run(go())


def test_a_listing_whose_connection_was_reset_is_asked_once_more():
    with ResettingLLM(1, formats={"chat"}, path_prefix="/v1", models=["gpt-4o"]) as fake:
        assert _models(fake) == ["gpt-4o"]
        assert fake.reset_count == 1
        assert fake.request_count["/v1/models"] == 2


def test_a_listing_that_keeps_failing_fails_naming_the_account():
    with ResettingLLM(2, formats={"chat"}, path_prefix="/v1", models=["gpt-4o"]) as fake:
        with pytest.raises(ToknError) as caught:
            _models(fake)
        assert fake.reset_count == 2      # asked twice, not more
    assert caught.value.message.startswith("account pool cannot reach ")
    assert caught.value.status == 502
