"""Fixtures every test gets: a private TOKN_HOME and a clean proxy/CA environment."""

from __future__ import annotations

import ssl

import pytest

from tokn.certs import build_ca, issue_leaf

SCRUBBED = (
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
    "http_proxy", "https_proxy", "all_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO", "CODEX_CA_CERTIFICATE",
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL",
    "TOKN_CONFIG", "GH_TOKEN", "GITHUB_TOKEN", "ZAI_API_KEY",
)


@pytest.fixture(autouse=True)
def tokn_home(tmp_path, monkeypatch):
    """Point every tokn location at a temp dir and scrub inherited proxy/CA vars."""
    for name in SCRUBBED:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "tokn home"
    home.mkdir()
    monkeypatch.setenv("TOKN_HOME", str(home))
    return home


@pytest.fixture
def store(tmp_path):
    """A usage store of its own (closed after the test)."""
    from tokn.usage import UsageStore

    usage = UsageStore(tmp_path / "usage.sqlite3")
    yield usage
    usage.close()


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


GOOGLE_ENV = ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL",
              "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_CLOUD_PROJECT")


@pytest.fixture
def genai_sdk(monkeypatch):
    """``genai_sdk(base_url=None, key="unused", **http_options)`` -> an official
    google-genai client, with no Google variable of the machine leaking in;
    closed after the test (the SDK closes its transport once a client is
    collected, so the test keeps them)."""
    from google import genai

    for name in GOOGLE_ENV:
        monkeypatch.delenv(name, raising=False)
    made: list[genai.Client] = []

    def make(base_url: str | None = None, key: str = "unused", **options) -> genai.Client:
        http = {**({"base_url": base_url} if base_url else {}), **options}
        client = genai.Client(api_key=key, http_options=http or None)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
