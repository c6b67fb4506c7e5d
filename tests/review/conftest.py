"""Reuse the proxy fixtures (stand-in public CA, TLS fakes under real names)."""

from tests.mitm.conftest import public_ca, tls_context_for  # noqa: F401
