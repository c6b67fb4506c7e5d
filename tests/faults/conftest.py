"""The stand-in public CA fixtures of the proxy tests, for fault tests through the proxy."""

from tests.mitm.conftest import public_ca, tls_context_for

__all__ = ["public_ca", "tls_context_for"]
