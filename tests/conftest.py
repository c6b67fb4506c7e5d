"""Fixtures every test gets: a private TOKN_HOME and a clean proxy/CA environment."""

from __future__ import annotations

import pytest

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
