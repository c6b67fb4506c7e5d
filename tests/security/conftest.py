"""Fixtures the security suite shares with other suites: the stand-in public CA
of the proxy tests, and the network namespace of the LAN test (a real second
network identity, to act as a LAN peer)."""

from tests.mitm.conftest import public_ca, tls_context_for  # noqa: F401
from tests.test_lan_netns import netns  # noqa: F401
