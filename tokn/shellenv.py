"""Env blocks that route a shell through the tokn proxy (sh/bash/zsh, fish, pwsh).

``eval "$(tokn proxy env)"`` runs this at every shell start, so it imports
nothing heavy: no mitmproxy, httpx, uvicorn, starlette, not even
``cryptography`` (the CA files are only stat'ed and read).  Everything here
but :func:`env_for_config` is pure.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from tokn.config import Config

SHELLS = ("sh", "bash", "zsh", "fish", "pwsh")
# Shells that take POSIX ``export K='v'`` syntax.
_SH_LIKE = frozenset({"sh", "bash", "zsh", "dash", "ksh", "mksh", "ash", "yash", "busybox"})
_PWSH = frozenset({"pwsh", "powershell"})

LOOPBACK_NO_PROXY = ("localhost", "127.0.0.1", "::1")

# Every variable env_vars() sets, in order; ``--unset`` clears exactly these.
VAR_NAMES: tuple[str, ...] = (
    "HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "NO_PROXY", "no_proxy",
    "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO",
    "NODE_EXTRA_CA_CERTS", "NODE_USE_ENV_PROXY", "CODEX_CA_CERTIFICATE",
)

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def proxy_url(host: str, port: int, key: str = "") -> str:
    """``http://HOST:PORT`` for clients; a wildcard listen address becomes loopback.

    With ``key`` (``[server].api_key``, which the proxy then requires) the URL
    carries it as Basic credentials: ``http://tokn:KEY@HOST:PORT``."""
    host = host.strip().strip("[]") or "127.0.0.1"
    if host in ("0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    if key:
        from urllib.parse import quote

        return f"http://tokn:{quote(key, safe='')}@{host}:{port}"
    return f"http://{host}:{port}"


def no_proxy_list(extra: Iterable[str] = ()) -> list[str]:
    """Loopback first, then ``extra``, without duplicates or blanks."""
    out: list[str] = []
    for item in (*LOOPBACK_NO_PROXY, *extra):
        item = item.strip()
        if item and item not in out:
            out.append(item)
    return out


def env_vars(proxy_url: str, ca_cert: str | os.PathLike[str], bundle: str | os.PathLike[str],
             no_proxy: Iterable[str] = ()) -> list[tuple[str, str]]:
    """The variables that send every common client through the proxy and make
    it trust tokn's CA.  ``bundle`` = system roots + tokn CA; ``ca_cert`` = the
    CA alone (Node adds NODE_EXTRA_CA_CERTS to its built-in roots)."""
    bundle, ca_cert = os.fspath(bundle), os.fspath(ca_cert)
    skip = ",".join(no_proxy_list(no_proxy))
    return [
        ("HTTPS_PROXY", proxy_url),
        ("HTTP_PROXY", proxy_url),
        ("https_proxy", proxy_url),
        ("http_proxy", proxy_url),
        ("NO_PROXY", skip),
        ("no_proxy", skip),
        ("SSL_CERT_FILE", bundle),  # OpenSSL-based clients: Python ssl, httpx, Ruby, ...
        ("REQUESTS_CA_BUNDLE", bundle),  # requests (ignores SSL_CERT_FILE)
        ("CURL_CA_BUNDLE", bundle),  # curl
        ("GIT_SSL_CAINFO", bundle),  # git over https
        ("NODE_EXTRA_CA_CERTS", ca_cert),  # Node: added to its bundled roots
        ("NODE_USE_ENV_PROXY", "1"),  # Node >= 24 fetch/https honour HTTP(S)_PROXY
        ("CODEX_CA_CERTIFICATE", bundle),  # OpenAI Codex CLI
    ]


# --- quoting --------------------------------------------------------------------------

def quote_sh(value: str) -> str:
    """POSIX single quotes: nothing inside is special; ``'`` becomes ``'\\''``."""
    return "'" + value.replace("'", "'\\''") + "'"


def quote_fish(value: str) -> str:
    """fish single quotes: only ``\\`` and ``'`` need a backslash."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# PowerShell treats the typographic single quotes as quote characters too.
_PWSH_QUOTES = re.compile("(['\u2018\u2019\u201a\u201b])")


def quote_pwsh(value: str) -> str:
    """PowerShell verbatim string: every single-quote character is doubled."""
    return "'" + _PWSH_QUOTES.sub(r"\1\1", value) + "'"


def shell_family(shell: str) -> str:
    """``sh``, ``fish`` or ``pwsh`` for a shell name or path; ValueError if unknown."""
    name = os.path.basename(shell.strip()).lower()
    if name.endswith(".exe"):
        name = name[:-4]
    if name.startswith("-"):  # login shells: "-bash"
        name = name[1:]
    if name in _SH_LIKE:
        return "sh"
    if name == "fish":
        return "fish"
    if name in _PWSH:
        return "pwsh"
    raise ValueError(f"unknown shell {shell!r}; use one of: {', '.join(SHELLS)}")


def _check_names(names: Iterable[str]) -> list[str]:
    names = list(names)
    for name in names:
        if not _NAME_RE.match(name):
            raise ValueError(f"not a valid environment variable name: {name!r}")
    return names


def render(shell: str, vars: Iterable[tuple[str, str]]) -> str:
    """Source-able lines that set ``vars`` in ``shell``."""
    family = shell_family(shell)
    pairs = list(vars)
    _check_names(k for k, _ in pairs)
    if family == "fish":
        lines = [f"set -gx {k} {quote_fish(v)}" for k, v in pairs]
    elif family == "pwsh":
        lines = [f"$Env:{k} = {quote_pwsh(v)}" for k, v in pairs]
    else:
        lines = [f"export {k}={quote_sh(v)}" for k, v in pairs]
    return "\n".join(lines) + "\n"


def render_unset(shell: str, names: Iterable[str] = VAR_NAMES) -> str:
    """Source-able lines that remove ``names`` from the environment of ``shell``."""
    family = shell_family(shell)
    names = _check_names(names)
    if family == "fish":
        lines = [f"set -e {k}" for k in names]
    elif family == "pwsh":
        lines = [f"Remove-Item Env:{k} -ErrorAction SilentlyContinue" for k in names]
    else:
        lines = [f"unset {' '.join(names)}"] if names else []
    return "\n".join(lines) + ("\n" if lines else "")


def guess_shell(env: Mapping[str, str] | None = None) -> str:
    """The user's shell from ``$SHELL`` (one of :data:`SHELLS`); ``sh`` when
    unknown, ``pwsh`` on Windows without ``$SHELL``."""
    env = os.environ if env is None else env
    value = env.get("SHELL", "")
    if not value:
        return "pwsh" if os.name == "nt" else "sh"
    name = os.path.basename(value).lower().removesuffix(".exe").lstrip("-")
    if name in SHELLS:
        return name
    if name == "powershell":
        return "pwsh"
    return "sh"


def apply(environ: Mapping[str, str], vars: Iterable[tuple[str, str]]) -> dict[str, str]:
    """A copy of ``environ`` with ``vars`` set (for subprocesses)."""
    out = dict(environ)
    out.update(vars)
    return out


def env_for_config(cfg: Config, *, host: str | None = None,
                   port: int | None = None) -> list[tuple[str, str]]:
    """:func:`env_vars` for ``cfg``: ensures tokn's CA and merged bundle exist.
    ``host``/``port`` override ``[proxy_mode]`` (tests running on port 0)."""
    from tokn import ca

    bundle = ca.ensure_bundle(cfg)
    files = ca.ca_files()
    url = proxy_url(host if host is not None else cfg.proxy_mode.host,
                    port if port is not None else cfg.proxy_mode.port, cfg.server.api_key)
    return env_vars(url, files.cert_path, bundle, cfg.proxy.no_proxy)
