"""Fake upstream servers on loopback for tests (see tests/fakes/README.md)."""

from .base import CapturedRequest, Exchange, FakeServer, Headers
from .github import FakeGitHub
from .llm import THINKING_SIGNATURE, FakeLLM

__all__ = [
    "THINKING_SIGNATURE",
    "CapturedRequest",
    "Exchange",
    "FakeGitHub",
    "FakeLLM",
    "FakeServer",
    "Headers",
]
