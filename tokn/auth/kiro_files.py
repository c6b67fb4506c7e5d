"""The Kiro sign-ins other tools keep, read for ``tokn import --from kiro``.

- Kiro IDE: ``~/.aws/sso/cache/kiro-auth-token.json`` (camelCase:
  ``accessToken``, ``refreshToken``, ``expiresAt``, ``authMethod``,
  ``provider``, ``region``, ``profileArn``; IdC adds ``clientIdHash``, whose
  ``~/.aws/sso/cache/<clientIdHash>.json`` holds ``clientId`` /
  ``clientSecret``);
- kiro-cli: SQLite ``~/.local/share/kiro-cli/data.sqlite3`` (macOS:
  ``~/Library/Application Support/kiro-cli/data.sqlite3``), table
  ``auth_kv``, keys ``kirocli:social:token``, ``kirocli:odic:token`` and
  ``kirocli:odic:device-registration`` (snake_case JSON values).

Nothing here talks to the network.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

from tokn.auth.kiro import iso, normalize_auth_method, parse_expiry, pick
from tokn.errors import ToknError

IDE_TOKEN_FILE = "kiro-auth-token.json"
CLI_TOKEN_KEYS = {"social": ":social:token", "idc": ":odic:token"}
CLI_REGISTRATION_SUFFIX = ":odic:device-registration"


def default_ide_token_file() -> Path:
    return Path.home() / ".aws" / "sso" / "cache" / IDE_TOKEN_FILE


def default_cli_database() -> Path:
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "kiro-cli" / "data.sqlite3"
    return Path.home() / ".local" / "share" / "kiro-cli" / "data.sqlite3"


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def read_ide_token(path: Path) -> dict[str, Any]:
    """Account fields from the Kiro IDE's token file (and its client registration)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ToknError(f"no Kiro token at {path}; sign in to the Kiro IDE first, or use "
                        "`tokn login --provider kiro`.", status=404, code="not_found") from None
    except (OSError, ValueError) as exc:
        raise ToknError(f"cannot read {path}: {exc}", status=400, code="bad_token_file") from exc
    if not isinstance(data, dict) or not pick(data, "refreshToken", "refresh_token"):
        raise ToknError(f"{path} holds no refreshToken; sign in to the Kiro IDE again.",
                        status=400, code="bad_token_file")
    out: dict[str, Any] = {
        "access_token": pick(data, "accessToken", "access_token"),
        "refresh_token": pick(data, "refreshToken", "refresh_token"),
        "expires_at": pick(data, "expiresAt", "expires_at"),
        "region": pick(data, "region"),
        "profile_arn": pick(data, "profileArn", "profile_arn"),
        "idp": pick(data, "provider"),
        "client_id": pick(data, "clientId", "client_id"),
        "client_secret": pick(data, "clientSecret", "client_secret"),
        "start_url": pick(data, "startUrl", "start_url"),
    }
    client_hash = pick(data, "clientIdHash", "client_id_hash")
    if client_hash and not (out["client_id"] and out["client_secret"]):
        reg_path = path.parent / f"{client_hash}.json"
        try:
            reg = json.loads(reg_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ToknError(f"{path} names client registration {client_hash} but {reg_path} "
                            "is missing; sign in to the Kiro IDE again.", status=400,
                            code="bad_token_file") from None
        except (OSError, ValueError) as exc:
            raise ToknError(f"cannot read {reg_path}: {exc}", status=400,
                            code="bad_token_file") from exc
        if isinstance(reg, dict):
            out["client_id"] = pick(reg, "clientId", "client_id")
            out["client_secret"] = pick(reg, "clientSecret", "client_secret")
            out["region"] = out["region"] or pick(reg, "region")
    out["auth_method"] = normalize_auth_method(
        pick(data, "authMethod", "auth_method"),
        has_client=bool(out["client_id"] and out["client_secret"]))
    out["source"] = str(path)
    return out


def read_cli_database(path: Path) -> dict[str, Any]:
    """Account fields from kiro-cli's SQLite store (IdC preferred over social)."""
    if not path.exists():
        raise ToknError(f"no kiro-cli database at {path}; run `kiro-cli login` first.",
                        status=404, code="not_found")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ToknError(f"cannot open {path}: {exc}", status=400, code="bad_token_file") from exc
    try:
        try:
            rows = dict(conn.execute("SELECT key, value FROM auth_kv").fetchall())
        except sqlite3.Error as exc:
            raise ToknError(f"{path} has no readable auth_kv table ({exc}); is it kiro-cli's "
                            "data.sqlite3?", status=400, code="bad_token_file") from exc
        profile = None
        with contextlib.suppress(sqlite3.Error):
            row = conn.execute("SELECT value FROM state WHERE key = ?",
                               ("api.codewhisperer.profile",)).fetchone()
            if row:
                profile = json.loads(row[0])
    finally:
        conn.close()

    def value(suffix: str) -> dict[str, Any] | None:
        keys = sorted((k for k in rows if str(k).endswith(suffix)),
                      key=lambda k: (not str(k).startswith("kirocli:"), k))
        for key in keys:
            with contextlib.suppress(ValueError, TypeError):
                data = json.loads(rows[key])
                if isinstance(data, dict) and pick(data, "refresh_token", "refreshToken",
                                                    "client_id", "clientId"):
                    return data
        return None

    idc, social = value(CLI_TOKEN_KEYS["idc"]), value(CLI_TOKEN_KEYS["social"])
    token, method = (idc, "idc") if idc else (social, "social")
    if token is None:
        raise ToknError(f"{path} holds no Kiro sign-in (auth_kv keys kirocli:social:token / "
                        "kirocli:odic:token); run `kiro-cli login` first.", status=404,
                        code="not_found")
    out: dict[str, Any] = {
        "access_token": pick(token, "access_token", "accessToken"),
        "refresh_token": pick(token, "refresh_token", "refreshToken"),
        "expires_at": pick(token, "expires_at", "expiresAt"),
        "region": pick(token, "region"),
        "profile_arn": pick(token, "profile_arn", "profileArn"),
        "start_url": pick(token, "start_url", "startUrl"),
        "idp": pick(token, "provider"),
        "auth_method": method,
    }
    if method == "idc":
        reg = value(CLI_REGISTRATION_SUFFIX) or {}
        out["client_id"] = pick(reg, "client_id", "clientId")
        out["client_secret"] = pick(reg, "client_secret", "clientSecret")
        out["region"] = out["region"] or pick(reg, "region")
    if not out["profile_arn"] and isinstance(profile, dict):
        out["profile_arn"] = pick(profile, "arn", "profile_arn", "profileArn")
    out["source"] = f"{path} (auth_kv)"
    return out


def read_sign_in(path: Path | None = None) -> dict[str, Any]:
    """The sign-in fields of the Kiro IDE's token file or kiro-cli's database
    (``path``; default: the IDE file when it exists, else the kiro-cli database),
    with ``source`` saying where they came from."""
    if path is None:
        ide = default_ide_token_file()
        path = ide if ide.exists() else default_cli_database()
        if not path.exists():
            raise ToknError(f"found no Kiro sign-in: neither {ide} (Kiro IDE) nor {path} "
                            "(kiro-cli) exists. Sign in to Kiro first, pass the file "
                            "explicitly, or use `tokn login --provider kiro`.",
                            status=404, code="not_found")
    path = Path(path).expanduser()
    fields = read_cli_database(path) if _is_sqlite(path) or path.suffix in (
        ".sqlite3", ".sqlite", ".db") else read_ide_token(path)
    if not fields.get("refresh_token"):
        raise ToknError(f"{fields.get('source', path)} holds no refresh token; sign in to "
                        "Kiro again.", status=400, code="bad_token_file")
    return fields


def account_fields(sign_in: dict[str, Any]) -> dict[str, Any]:
    """The account fields for signed-in / imported Kiro credentials (no empty values)."""
    expires = parse_expiry(sign_in.get("expires_at"))
    values: dict[str, Any] = {
        "auth_method": sign_in.get("auth_method"),
        "access_token": sign_in.get("access_token"),
        "refresh_token": sign_in.get("refresh_token"),
        "expires_at": iso(expires) if expires else None,
        "region": sign_in.get("region"),
        "profile_arn": sign_in.get("profile_arn"),
        "client_id": sign_in.get("client_id"),
        "client_secret": sign_in.get("client_secret"),
        "start_url": sign_in.get("start_url"),
        "idp": sign_in.get("idp"),
    }
    if values["auth_method"] != "idc":
        values.pop("client_id")
        values.pop("client_secret")
    return {k: str(v) if not isinstance(v, (int, float, bool)) else v
            for k, v in values.items() if v not in (None, "")}
