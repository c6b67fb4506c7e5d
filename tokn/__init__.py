"""tokn: a local gateway for AI subscriptions."""

__version__ = "0.1.0"
