"""A Kiro account's tokens: the access token, renewed with a refresh token that
is single-use (every refresh rotates it).

The :class:`~tokn.auth.tokens.Refresher` does the renewing (ahead of expiry,
once on a rejection, one refresh at a time across every tokn process); this
module is what it needs to know of Kiro (:class:`KiroTokenSource`):

* where the best token is: the state cache ``kiro-tokens.json`` when it
  belongs to the configured refresh token (or one rotated from it), else the
  config file's fields;
* how to refresh (:func:`tokn.auth.kiro.refresh`, social or IdC);
* that a rotated refresh token goes straight back to ``config.toml`` (losing
  it locks the user out); the state cache holds it too.
"""

from __future__ import annotations

import logging
import time
import tomllib
from collections.abc import Callable
from typing import Any

import httpx

from tokn import paths
from tokn.auth import kiro as kiro_auth
from tokn.auth.tokens import Token
from tokn.config import AccountConfig

log = logging.getLogger("tokn.providers.kiro")

TOKEN_STATE = "kiro-tokens"
MIN_REFRESH_MARGIN = 300.0
# Spent refresh tokens a record remembers: a replica whose config still holds
# one of them (others rotated it since, [state] url) knows the record is its own.
LINEAGE_MAX = 50


class KiroTokenSource:
    """The Kiro side of a :class:`~tokn.auth.tokens.Refresher` (a ``TokenSource``)."""

    def __init__(self, account: AccountConfig, client: httpx.AsyncClient, *,
                 refresh_url: Callable[[], str], auth_method: Callable[[], str],
                 identity_headers: Callable[[], dict[str, str]], margin: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.account = account
        self.client = client
        self._refresh_url = refresh_url
        self._auth_method = auth_method
        self._identity_headers = identity_headers
        self.margin = margin
        self.clock = clock
        self.refresh_count = 0

    def _token(self, access: str, refresh: str, expires_at: float, profile_arn: str = "",
               previous: str = "", lineage: list[str] | None = None) -> Token:
        return Token(access, expires_at, expires_at - self.margin,
                     data={"refresh_token": refresh, "profile_arn": profile_arn,
                           "previous_refresh_token": previous, "lineage": lineage or []})

    def from_config(self) -> Token:
        """The tokens as the account's config fields hold them."""
        get = self.account.get
        return self._token(str(get("access_token") or ""), str(get("refresh_token") or ""),
                           kiro_auth.parse_expiry(get("expires_at")) or 0.0,
                           str(get("profile_arn") or ""))

    def token_from_record(self, record: dict[str, Any] | None) -> Token:
        """The best known tokens: the state cache when it belongs to the configured
        refresh token (or to the one rotated from it), else the config's."""
        conf = self.from_config()
        if not isinstance(record, dict) or not record.get("access_token"):
            return conf
        try:
            spent = record.get("lineage") or []
            tok = self._token(str(record["access_token"]), str(record.get("refresh_token") or ""),
                              float(record.get("expires_at") or 0),
                              str(record.get("profile_arn") or ""),
                              str(record.get("previous_refresh_token") or ""),
                              [str(t) for t in spent] if isinstance(spent, list) else [])
        except (TypeError, ValueError):
            return conf
        lineage = {tok.data["refresh_token"], tok.data["previous_refresh_token"],
                   *tok.data["lineage"]}
        configured = conf.data["refresh_token"]
        if configured not in lineage and self.file_refresh_token() not in lineage:
            return conf              # another sign-in since: the cache is stale
        if tok.data["refresh_token"] != configured \
                and tok.data["refresh_token"] != self.file_refresh_token():
            log.warning("kiro %s: the config file still holds a refresh token that was "
                        "rotated; using the newer one from the state cache", self.account.id)
        tok.data["profile_arn"] = tok.data["profile_arn"] or conf.data["profile_arn"]
        if conf.expires_at > tok.expires_at and conf.access:
            return conf
        return tok

    def file_refresh_token(self) -> str:
        """The account's refresh token as the config file holds it now."""
        try:
            data = tomllib.loads(paths.config_file().read_text(encoding="utf-8"))
        except (OSError, ValueError):  # unreadable, not UTF-8, not TOML
            return ""
        for acc in data.get("accounts") or []:
            if isinstance(acc, dict) and acc.get("id") == self.account.id:
                return str(acc.get("refresh_token") or "")
        return ""

    def token_record(self, token: Token) -> dict[str, Any]:
        return {"access_token": token.access, "refresh_token": token.data["refresh_token"],
                "expires_at": token.expires_at, "profile_arn": token.data["profile_arn"],
                "previous_refresh_token": token.data["previous_refresh_token"],
                "lineage": token.data["lineage"]}

    async def fetch_token(self, current: Token | None) -> Token:
        """Refresh: a new access token and, mostly, a new refresh token."""
        current = current or self.from_config()
        old_refresh = current.data["refresh_token"]
        self.refresh_count += 1
        data = await kiro_auth.refresh(
            self.client, auth_method=self._auth_method(), refresh_token=old_refresh,
            url=self._refresh_url(), client_id=self.account.get("client_id"),
            client_secret=self.account.get("client_secret"),
            headers=self._identity_headers(), account_id=self.account.id, clock=self.clock)
        rotated = bool(data.get("refresh_token")) and data["refresh_token"] != old_refresh
        lineage = list(current.data.get("lineage") or [])
        if rotated:
            lineage = [*lineage, old_refresh][-LINEAGE_MAX:]
        new = self._token(data["access_token"], str(data["refresh_token"] or old_refresh),
                          float(data["expires_at"]),
                          str(data.get("profile_arn") or current.data["profile_arn"] or ""),
                          old_refresh if rotated else current.data["previous_refresh_token"],
                          lineage)
        new.data["rotated"] = rotated  # for token_saved; not persisted
        return new

    def token_saved(self, token: Token) -> None:
        """Write a rotated refresh token (or a profile ARN that appeared) into the
        account's table in the config file; the state cache already holds it."""
        arn = token.data["profile_arn"]
        if not token.data.pop("rotated", False) and (not arn or arn == self.account.get(
                "profile_arn")):
            return
        fields = {"access_token": token.access, "refresh_token": token.data["refresh_token"],
                  "expires_at": token.expires_at, **({"profile_arn": arn} if arn else {})}
        try:
            if not kiro_auth.persist_tokens(self.account.id, fields):
                log.warning("kiro %s: account not found in the config file; the rotated "
                            "refresh token lives only in the state cache", self.account.id)
        except Exception as exc:  # noqa: BLE001 - the state cache still holds it
            log.error("kiro %s: cannot save the rotated refresh token to the config file "
                      "(%s); it is kept in the state cache", self.account.id, exc)
