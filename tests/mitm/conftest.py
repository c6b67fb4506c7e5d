"""Fixtures for proxy tests: a stand-in public CA and HTTPS fakes under real names."""

from __future__ import annotations

import ssl

import pytest

from tokn.ca import build_ca, issue_leaf


@pytest.fixture
def public_ca(tmp_path):
    """A CA playing the public web PKI for fake upstreams; returns its PEM path."""
    ca = build_ca(common_name="tokn test public root")
    path = tmp_path / "public-root.pem"
    path.write_bytes(ca.cert_pem)
    return ca, path


@pytest.fixture
def tls_context_for(public_ca, tmp_path):
    """``tls_context_for("api.openai.com")`` -> server SSLContext with a leaf
    for that name, signed by the stand-in public CA."""
    ca, _ = public_ca

    def make(*names: str) -> ssl.SSLContext:
        cert, key = issue_leaf(list(names), ca=ca)
        cert_path = tmp_path / f"{names[0]}.crt"
        key_path = tmp_path / f"{names[0]}.key"
        cert_path.write_bytes(cert + ca.cert_pem)
        key_path.write_bytes(key)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert_path, key_path)
        return ctx

    return make
