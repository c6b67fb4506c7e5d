"""The pure rules behind the security suite, checked with plain function calls:
target names, credential destinations, connection auth, caps, the listener's
gate, the mitmdump entry's listening check, config validation."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers

from tests.security.helpers import basic
from tokn.config import ConfigError, parse_config
from tokn.connlimits import ConnectionCaps, fd_budget, is_loopback_peer
from tokn.hosts import parse_authority
from tokn.keys import KeyRing
from tokn.mitm.access import ConnState, ProxyAccess, authorize
from tokn.mitm.target import Target, check_names, credential_may_go, target_of
from tokn.server.httpguard import Policy, host_allowed, is_json_type, screen, too_deep
from tokn.standalone import listen_problem

RING = KeyRing(None)  # no people's keys

OPENAI = Target("api.openai.com", 443, True)


@pytest.mark.parametrize("host", ["api.openai.com", "API.OpenAI.com", "api.openai.com.",
                                  "api.openai.com:443", "Api.OpenAI.COM.:443"])
def test_names_that_agree_with_the_target(host):
    assert check_names(OPENAI, scheme="https", host_headers=[host]) is None


@pytest.mark.parametrize("host", [
    "api.openai.com:80", "api.openai.com:4443", "evil.example", "api.openai.com.evil.example",
    "evil.example@api.openai.com", "api.openai.com@evil.example", "api.openai.com/x",
    "api.openai.com:443:443", "api.openai.com ", "[::1]:443", "api.openai.com:0",
    "api.openai.com:65536", "api.openai.com:+443", "api.openai.com:４４３", "",
    "api..openai.com", "xn--api-openai.com",
])
def test_names_that_do_not(host):
    assert check_names(OPENAI, scheme="https", host_headers=[host]) is not None


def test_authority_multiple_hosts_and_tunnel_sni():
    assert check_names(OPENAI, scheme="https", host_headers=[],
                       authority="api.openai.com") is None
    assert check_names(OPENAI, scheme="https", host_headers=["api.openai.com"],
                       authority="evil.example") is not None
    assert check_names(OPENAI, scheme="https",
                       host_headers=["api.openai.com", "api.openai.com"]) is not None
    assert check_names(OPENAI, scheme="https", host_headers=[], tunnel_sni="API.openai.com") \
        is None
    assert check_names(OPENAI, scheme="https", host_headers=[], tunnel_sni="evil.example") \
        is not None
    v6 = target_of("::1", 8080, "http")
    assert check_names(v6, scheme="http", host_headers=["[0:0::1]:8080"]) is None
    assert check_names(v6, scheme="http", host_headers=["[::1]"]) is not None  # port 80


def test_parse_authority_rejects_zone_ids_and_bare_ipv6():
    for bad in ("[fe80::1%eth0]:443", "::1", "[::1", "[nothex]"):
        with pytest.raises(ValueError):
            parse_authority(bad, 443)


@pytest.mark.parametrize("target,base_url,hosts,ok", [
    (OPENAI, "", ("api.openai.com",), True),
    (Target("api.openai.com", 443, False), "", ("api.openai.com",), False),   # plain HTTP
    (OPENAI, "", ("api.anthropic.com",), False),
    (OPENAI, "https://gateway.example/v1", ("api.openai.com",), False),    # own base_url
    (Target("gateway.example", 443, True), "https://Gateway.Example/v1", (), True),
    (Target("gateway.example", 8443, True), "https://gateway.example/v1", (), False),
    (Target("gateway.example", 8443, True), "https://gateway.example:8443", (), True),
    (Target("gateway.example", 80, False), "http://gateway.example", (), False),
    (Target("api.x.githubcopilot.com", 443, True), "", ("api.*.githubcopilot.com",), True),
    (Target("api.githubcopilot.com.evil", 443, True), "", ("api.*.githubcopilot.com",), False),
])
def test_credential_destinations(target, base_url, hosts, ok):
    assert credential_may_go(target, base_url=base_url, provider_hosts=hosts) is ok


def test_connection_auth_is_sticky_per_connection_only():
    state = ConnState()
    assert not authorize("k", RING, state, None)
    assert not authorize("k", RING, state, basic(password="nope"))
    assert not state.authed
    assert authorize("k", RING, state, basic(user="switch", password="k"))
    assert state.authed and state.user == "switch"
    assert authorize("k", RING, state, None)  # later requests on the same connection
    access = ProxyAccess("k", RING)
    assert access.admit("a", basic(password="k")) and not access.admit("b", None)
    access.forget("a")
    assert not access.authed("a")
    assert authorize("", RING, ConnState(), None)  # no key: everyone (loopback only)


def test_connection_caps():
    caps = ConnectionCaps(total=3, per_client=2)
    assert caps.exempt("127.0.0.1", "127.0.0.1") and caps.exempt("::ffff:127.0.0.5", "")
    assert caps.exempt("192.0.2.9", "192.0.2.9")  # this machine's own address
    assert not caps.exempt("192.0.2.10", "192.0.2.9")
    assert [caps.admit("10.0.0.1") for _ in range(3)] == [True, True, False]
    assert caps.admit("10.0.0.2") and not caps.admit("10.0.0.3")  # total reached
    caps.release("10.0.0.1")
    assert caps.admit("10.0.0.3")
    assert is_loopback_peer("::1") and not is_loopback_peer("0.0.0.0")
    assert fd_budget(1024) == 224 and fd_budget(100) == 16


H = {"content-type": "application/json"}


@pytest.mark.parametrize("headers,method,key,expected", [
    ({"host": "127.0.0.1:4141", **H}, "POST", False, None),
    ({"host": "evil.example:4141", **H}, "POST", False, 403),
    ({"host": "evil.example:4141", **H}, "POST", True, None),
    ({"host": "127.0.0.1", "origin": "https://evil.example", **H}, "POST", True, 403),
    ({"host": "127.0.0.1", "origin": "http://localhost:3000/", **H}, "POST", False, None),
    ({"host": "127.0.0.1", "content-type": "text/plain"}, "POST", False, 415),
    ({"host": "127.0.0.1"}, "POST", False, 415),
    ({"host": "127.0.0.1"}, "GET", False, None),
    ({"host": "127.0.0.1", "content-type": "application/vnd.api+json"}, "POST", False, None),
    ({"host": "127.0.0.1", "content-length": "2000000", **H}, "POST", False, 413),
])
def test_listener_gate(headers, method, key, expected):
    policy = Policy(cors_origins=("http://localhost:3000",), max_body=1_000_000)
    result = screen(method, Headers(headers), policy, key_set=key)
    assert (result[0] if result else None) == expected


def test_gate_helpers():
    assert host_allowed("[::1]:1", ()) and host_allowed("a.localhost", ())
    assert not host_allowed("localhost.evil.example", ()) and not host_allowed("0.0.0.0", ())
    assert host_allowed("Tokn.Lan.:80", ("tokn.lan",))
    assert is_json_type("Application/JSON; charset=utf-8") and not is_json_type("text/json")
    assert too_deep([[[]]], 2) and not too_deep([[[]]], 3) and not too_deep({"a": 1}, 1)


@pytest.mark.parametrize("modes,host,remote,key,problem", [
    (["regular"], "127.0.0.1", False, "", None),
    (["regular@8080"], "::1", False, "k", None),
    (["regular"], "0.0.0.0", False, "k", "tokn_insecure_allow_remote"),
    (["regular"], "", False, "k", "tokn_insecure_allow_remote"),   # "" = every interface
    (["regular@0.0.0.0:8080"], "127.0.0.1", False, "k", "tokn_insecure_allow_remote"),
    (["regular"], "0.0.0.0", True, "", "API key"),
    (["regular"], "0.0.0.0", True, "k", None),
    (["socks5"], "127.0.0.1", False, "k", "regular proxy mode"),
    (["regular", "transparent"], "127.0.0.1", False, "k", "regular proxy mode"),
])
def test_mitmdump_listening_check(modes, host, remote, key, problem):
    found = listen_problem(modes, host, allow_remote=remote, api_key=key)
    assert (found is None) if problem is None else (problem in found), found


@pytest.mark.parametrize("key,value", [("max_body_mb", 0), ("header_timeout_secs", -1),
                                       ("max_client_connections", 0)])
def test_limits_must_be_positive(key, value):
    with pytest.raises(ConfigError, match=key):
        parse_config({"server": {key: value}})
