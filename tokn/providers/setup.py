"""The account-setup contract: what ``tokn login`` / ``tokn import`` give a
provider, and what the provider gives back.

A provider declares the options its sign-in and its imports take
(:class:`Option`, in ``Provider.login_options`` / ``import_options``); the CLI
offers the union of every provider's options, refuses one the chosen provider
does not take, and calls ``login(setup, **options)`` /
``import_(source, setup, **options)`` with exactly the declared ones, so a
misspelled option is an error, never silently dropped.  Both return the
account's provider fields (:class:`Credentials`); choosing the account id,
verifying and saving are the same for every provider (:mod:`tokn.accounts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import webbrowser
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True)
class Option:
    """A sign-in or import option (``name`` is the keyword; ``--name-with-dashes``
    on the command line).  ``flag``: a switch, else a string value."""

    name: str
    help: str
    flag: bool = False

    @property
    def cli(self) -> str:
        return "--" + self.name.replace("_", "-")


NO_BROWSER = Option("no_browser", "Do not open a browser.", flag=True)
KEY_STDIN = Option("key_stdin", "Read the API key from stdin (for scripts).", flag=True)
ENV_VAR = Option("env_var", "Variable to read (env; default: the provider's).")


@dataclass
class Credentials:
    """What a sign-in or an import found: the account's provider ``fields``
    (its credential under the provider's ``key_field``, and any other field),
    and where they came from (shown, secret masked)."""

    fields: dict[str, Any]
    source: str = ""
    hint: str = ""        # added to the error when verifying the credential fails


@dataclass
class Verified:
    """A credential checked upstream: ``note`` for the line ``saved account ID
    (PROVIDER, NOTE)``, and ``fields`` learnt on the way (a login name)."""

    note: str = ""
    fields: dict[str, Any] = field(default_factory=dict)


class Setup:
    """The person at the terminal and the network, as a sign-in needs them.

    ``say`` prints for the person (one unwrapped line per call: URLs must stay
    pasteable); ``ask_secret`` reads a secret (hidden prompt); ``waiting`` shows
    that tokn waits (a status line, through a context manager that yields a
    function changing its text); ``open_browser`` opens a URL (or hands it to
    a test); ``transport`` is the httpx transport sign-in clients use (``None``:
    the network, honouring ``HTTPS_PROXY``).
    """

    def __init__(self, *, say: Callable[[str], None] | None = None,
                 ask_secret: Callable[[str], str] | None = None,
                 waiting: Callable[[str], contextlib.AbstractContextManager[
                     Callable[[str], None]]] | None = None,
                 open_browser: Callable[[str], Any] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.say = say or _print
        self._ask_secret = ask_secret
        self._waiting = waiting
        self._open_browser = open_browser or _open_system_browser
        self.transport = transport

    def ask_secret(self, label: str) -> str:
        if self._ask_secret is None:
            raise RuntimeError(f"nobody to ask for the {label}")
        return self._ask_secret(label)

    @contextlib.contextmanager
    def waiting(self, text: str) -> Iterator[Callable[[str], None]]:
        """A status shown while the block runs; yields a function that changes it."""
        if self._waiting is None:
            self.say(text)
            yield self.say
            return
        with self._waiting(text) as update:
            yield update

    async def open_browser(self, url: str) -> None:
        """Open ``url`` for the person (a convenience: failing is not an error)."""
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._open_browser, url)

    def client(self, timeout: float = 30.0, **kwargs: Any) -> httpx.AsyncClient:
        """An HTTP client for a sign-in (HTTPS_PROXY honoured on the network)."""
        return httpx.AsyncClient(transport=self.transport, timeout=timeout,
                                 trust_env=self.transport is None, **kwargs)


def _print(text: str) -> None:
    print(text, file=sys.stderr)


def _open_system_browser(url: str) -> None:
    if sys.platform not in ("darwin", "win32"):
        import os

        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return  # no display: the URL printed is the way
    webbrowser.open(url)
