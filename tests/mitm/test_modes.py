"""Pure proxy decisions: mode precedence, endpoint mapping, allowlist regex."""

from __future__ import annotations

import base64
import re

import pytest

from tokn import wire
from tokn.hosts import intercept_patterns, provider_for
from tokn.mitm.modes import allow_hosts_regex, parse_basic, resolve_mode

PM = {"github-copilot": "switch", "anthropic": "passthrough"}


@pytest.mark.parametrize("header,user,provider,default,expected", [
    ("passthrough", "switch", "github-copilot", "route", "passthrough"),   # header wins
    (None, "passthrough", "github-copilot", "route", "passthrough"),       # then username
    (None, None, "github-copilot", "route", "switch"),                     # then provider_modes
    (None, None, "anthropic", "switch", "passthrough"),
    (None, None, "openai", "switch", "switch"),                            # then the default
    (None, None, None, "route", "route"),
    ("ROUTE", None, "anthropic", "passthrough", "route"),                  # case-insensitive
])
def test_mode_precedence(header, user, provider, default, expected):
    assert resolve_mode(header=header, connect_user=user, provider=provider,
                        provider_modes=PM, default=default) == expected


@pytest.mark.parametrize("header,user", [("teleport", None), (None, "bogus")])
def test_invalid_mode_names_the_valid_ones(header, user):
    with pytest.raises(ValueError, match="route, switch, passthrough"):
        resolve_mode(header=header, connect_user=user, provider=None, provider_modes={},
                     default="route")


@pytest.mark.parametrize("method,path,fmt", [
    ("POST", "/v1/chat/completions", "chat"),
    ("POST", "/chat/completions", "chat"),                       # Copilot, un-prefixed
    ("POST", "/api/coding/paas/v4/chat/completions?x=1", "chat"),  # Z.ai
    ("POST", "/api/v1/chat/completions", "chat"),                # OpenRouter
    ("POST", "/v1/messages", "messages"),
    ("POST", "/v1/messages/count_tokens", "count_tokens"),
    ("POST", "/v1/responses", "responses"),
    ("POST", "/responses", "responses"),
    ("POST", "/v1/embeddings", "embeddings"),
    ("GET", "/v1/models", "models"),
    ("GET", "/models/", "models"),
    ("GET", "/v1/chat/completions", None),
    ("POST", "/v1/files", None),
    ("DELETE", "/v1/models", None),
])
def test_endpoint_mapping(method, path, fmt):
    found = wire.match(method, path)
    assert (found[0].fmt if found else None) == fmt


@pytest.mark.parametrize("host,path,provider", [
    ("api.openai.com", "/v1/chat/completions", "openai"),
    ("api.anthropic.com", "/v1/messages", "anthropic"),
    ("api.githubcopilot.com", "/chat/completions", "github-copilot"),
    ("api.individual.githubcopilot.com", "/chat/completions", "github-copilot"),
    ("api.z.ai", "/api/coding/paas/v4/chat/completions", "zai-coding-plan"),
    ("api.z.ai", "/api/paas/v4/chat/completions", "zai"),
    ("open.bigmodel.cn", "/api/coding/paas/v4/chat/completions", "zhipuai-coding-plan"),
    ("open.bigmodel.cn", "/api/paas/v4/chat/completions", "zhipuai"),
    ("api.deepseek.com", "/chat/completions", "deepseek"),
    ("openrouter.ai", "/api/v1/chat/completions", "openrouter"),
    ("example.com", "/", None),
    ("api.openai.com.evil.test", "/", None),
])
def test_host_provider_table(host, path, provider):
    assert provider_for(host, path) == provider


def test_allowlist_regex_is_anchored_and_honours_passthrough_hosts():
    patterns = intercept_patterns(["llm.internal.example"], ["api.deepseek.com"])
    rex = re.compile(allow_hosts_regex(patterns, ["api.deepseek.com",
                                                  "api.business.githubcopilot.com"]))
    assert rex.search("api.openai.com:443")
    assert rex.search("llm.internal.example:8443")
    assert rex.search("api.enterprise.githubcopilot.com:443")
    for host in ("api.openai.com.evil.test:443", "xapi.openai.com:443", "api.deepseek.com:443",
                 "api.business.githubcopilot.com:443", "github.com:443", "a.b.githubcopilot.com"):
        assert not rex.search(host), host


def test_parse_basic():
    token = base64.b64encode(b"switch:s3cret").decode()
    assert parse_basic(f"Basic {token}") == ("switch", "s3cret")
    assert parse_basic("Bearer x") is None
    assert parse_basic("Basic !!!") is None
