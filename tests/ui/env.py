"""A running tokn with two accounts on loopback fakes, for the dashboard tests:
``copilot`` (GitHub Copilot: fake GitHub with plan and quota snapshots, fake
Copilot API) and ``local`` (an OpenAI-compatible key serving ``m-a``, ``m-b``)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import httpx

from tests.fakes.github import FakeGitHub
from tests.fakes.llm import FakeLLM
from tests.helpers import account, running_tokn, write_config

XSS = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(2)</script>"


@contextlib.contextmanager
def dashboard(*, api_key: str | None = None, record_bodies: bool = True,
              extra: dict[str, Any] | None = None) -> Iterator[Any]:
    with FakeGitHub(token_ttl=1800) as gh, \
            FakeLLM(copilot_style=True, models=["gpt-4.1", "claude-sonnet-4"],
                    token_validator=gh.is_valid_copilot_token) as copilot_api, \
            FakeLLM(formats={"chat"}, path_prefix="/v1", models=["m-a", "m-b"]) as local:
        gh.copilot_api_url = copilot_api.url
        gh.set_quota("premium_interactions", entitlement=300, remaining=213,
                     percent_remaining=71.0)
        write_config({
            "usage": {"record_bodies": record_bodies},
            **(extra or {}),
            "accounts": [
                account("copilot", "github-copilot", github_token="gho_dashboardtest",
                        settings={"github_api_url": gh.url, "github_base_url": gh.url}),
                account("local", "openai-compatible", base_url=local.url + "/v1",
                        api_key="sk-local-secret-0001"),
            ]})
        with running_tokn(api_key=api_key) as tokn:
            tokn.local = local
            tokn.copilot_api = copilot_api
            tokn.github = gh
            yield tokn


def chat(tokn: Any, model: str, text: str = "hi", key: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(tokn.api_url + "/v1/chat/completions", headers=headers, timeout=30,
                      json={"model": model, "messages": [{"role": "user", "content": text}]})


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)
