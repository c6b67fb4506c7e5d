"""The network namespace of the LAN test (a real second network identity, to
act as a LAN peer), for the security suite too.  ``public_ca`` and
``tls_context_for`` come from tests/conftest.py."""

from tests.test_lan_netns import netns  # noqa: F401
