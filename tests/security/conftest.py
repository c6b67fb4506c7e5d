"""The stand-in public CA fixtures of the proxy tests, for the security suite too."""

from tests.mitm.conftest import public_ca, tls_context_for  # noqa: F401
