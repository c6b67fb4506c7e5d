"""A person's key at the proxy, addon by addon: Basic user = key name, route
mode only for the pool (switch would bypass the key's limits), attribution."""

from __future__ import annotations

import dataclasses
import json

from mitmproxy.test import tutils

from tests.helpers import stored_rows
from tests.mitm.test_addons import KEY, basic, services, switch_account, through, tunnel_flow
from tokn import hop, keys


def with_keys(svc):
    return dataclasses.replace(svc, keys=keys.KeyRing(keys.default_path()))


def test_route_hands_the_persons_name_to_the_listener():
    alice = keys.create("alice")
    flow = through(with_keys(services(key=KEY)), tunnel_flow(headers=[
        ("proxy-authorization", basic("alice", alice))]))
    assert flow.response is None
    assert flow.request.headers[hop.IDENTITY] == "alice"


def test_a_name_with_someone_elses_key_is_refused():
    keys.create("alice")
    bob = keys.create("bob")
    flow = through(with_keys(services(key=KEY)), tunnel_flow(headers=[
        ("proxy-authorization", basic("alice", bob))]))
    assert flow.response.status_code == 407
    assert hop.IDENTITY not in flow.request.headers


def test_switch_mode_is_refused_to_a_person_and_no_credential_goes():
    alice = keys.create("alice")
    flow = through(with_keys(services([switch_account()], key=KEY)), tunnel_flow(headers=[
        ("proxy-authorization", basic("alice", alice)), ("authorization", "Bearer mine"),
        ("x-tokn-route-mode", "switch")]))
    assert flow.response.status_code == 403
    error = json.loads(flow.response.content)["error"]
    assert "route mode only" in error["message"]
    assert flow.request.headers["authorization"] == "Bearer mine"  # not the pool's sk-pool
    # the admin key may switch
    admin = through(services([switch_account()], key=KEY), tunnel_flow(headers=[
        ("proxy-authorization", basic("tokn", KEY)), ("x-tokn-route-mode", "switch")]))
    assert admin.request.headers["authorization"] == "Bearer sk-pool"


def test_passthrough_rows_name_the_person(store):
    alice = keys.create("alice")
    flow = through(with_keys(services(key=KEY, store=store)), tunnel_flow(headers=[
        ("proxy-authorization", basic("alice", alice)), ("authorization", "Bearer own"),
        ("x-tokn-route-mode", "passthrough")]),
        response=lambda: tutils.tresp(status_code=200, content=b'{"model":"gpt-4o"}'))
    assert flow.request.headers["authorization"] == "Bearer own"
    (row,) = stored_rows(store)
    assert row["key_name"] == "alice" and row["route_mode"] == "passthrough"
