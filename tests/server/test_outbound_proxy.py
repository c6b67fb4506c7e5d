"""``[proxy]``: tokn's own upstream calls through an HTTP or SOCKS5 proxy (a real
loopback proxy that reaches only the names it was given)."""

from __future__ import annotations

import httpx
import pytest
from typer.testing import CliRunner

from tests.fakes.internet import FakeInternet
from tests.fakes.llm import FakeLLM
from tests.helpers import account, running_tokn, write_config
from tokn.cli import app

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "through the proxy"}]}


@pytest.fixture
def openai_by_name(public_ca, tls_context_for):
    """A fake api.openai.com (TLS, its real name) behind a fake internet."""
    _, root = public_ca
    with FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o"], auth={"sk-pooled"},
                 ssl_context=tls_context_for("api.openai.com")) as fake, \
            FakeInternet({"api.openai.com:443": fake.port}) as net:
        # the default base URL: only the proxy can reach api.openai.com here
        write_config({"proxy_mode": {"upstream_ca_bundle": str(root)},
                      "accounts": [account("o", "openai", api_key="sk-pooled")]})
        yield fake, net


@pytest.mark.parametrize("scheme", ["socks5h", "socks5", "http"])
def test_set_proxy_url_then_serve_reaches_upstream_through_it(openai_by_name, scheme):
    fake, net = openai_by_name
    url = f"{scheme}://127.0.0.1:{net.port}"
    result = CliRunner().invoke(app, ["config", "set", "proxy.url", url])
    assert result.exit_code == 0, result.output
    with running_tokn() as tokn:
        answer = httpx.post(tokn.api_url + "/v1/chat/completions", json=CHAT, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "echo: through the proxy"
    protocol = "http-connect" if scheme == "http" else "socks5"
    assert (protocol, "api.openai.com:443") in net.tunnels
    if scheme != "http":
        # the name travels to the proxy (nothing here can resolve api.openai.com)
        assert "api.openai.com" in net.socks_names
    assert fake.requests_to("/v1/chat/completions")[-1].bearer() == "sk-pooled"


def test_unreachable_socks_proxy_is_a_clear_error_in_the_callers_format(openai_by_name):
    _, net = openai_by_name
    write_config({"proxy": {"url": "socks5h://127.0.0.1:9"},
                  "accounts": [account("o", "openai", api_key="sk-pooled",
                                       models=["gpt-4o"])]})
    with running_tokn() as tokn:
        answer = httpx.post(tokn.api_url + "/v1/chat/completions", json=CHAT, timeout=60)
    assert answer.status_code >= 500
    assert answer.json()["error"]["message"]
    assert not net.tunnels


def test_import_verifies_the_key_the_way_serve_will_call(openai_by_name, monkeypatch):
    """`tokn import` checks the key through [proxy] and the upstream CA bundle too."""
    fake, net = openai_by_name
    runner = CliRunner()
    assert runner.invoke(app, ["config", "set", "proxy.url", net.socks_url]).exit_code == 0
    monkeypatch.setenv("OPENAI_API_KEY", "sk-pooled")
    result = runner.invoke(app, ["import", "--from", "env", "--provider", "openai"])
    assert result.exit_code == 0, result.output
    assert "saved account o (openai, key works" in result.output
    assert fake.requests_to("/v1/models")[-1].bearer() == "sk-pooled"
    assert ("socks5", "api.openai.com:443") in net.tunnels
