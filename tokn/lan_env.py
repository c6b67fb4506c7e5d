"""LAN mode, the pure part: Host-header validation, bootstrap URLs, env scripts.

A colleague's machine runs the script served at ``/-/lan/env?shell=...``. It

1. downloads tokn's CA certificate from ``/-/lan/ca.crt``;
2. checks the SHA-256 of its DER encoding (the ``openssl x509 -fingerprint
   -sha256`` value) against the fingerprint the script was issued with, and
   on a mismatch prints an error and fails *without exporting anything*;
3. builds a merged bundle (the client's own system roots + that CA) under
   ``${XDG_CONFIG_HOME:-$HOME/.config}/tokn/lan/HOST-PORT/`` (``%APPDATA%``
   on Windows);
4. exports the same variables as ``tokn proxy env`` (proxy URL with
   ``tokn:KEY@`` credentials when the server has an API key) plus
   ``OPENAI_BASE_URL`` / ``ANTHROPIC_BASE_URL`` / ``OPENAI_API_KEY`` /
   ``ANTHROPIC_API_KEY`` pointing at the listener.

Everything here is pure: no I/O, no tokn runtime; quoting comes from
:mod:`tokn.shellenv`.
"""

# The shell templates below keep one shell statement per line.
# ruff: noqa: E501

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from tokn import shellenv
from tokn.ca import SYSTEM_BUNDLES

SHELLS = shellenv.SHELLS
ENV_PATH = "/-/lan/env"
CA_PATH = "/-/lan/ca.crt"
BOOTSTRAP_PATH = "/-/lan/bootstrap.json"
# Variables the script sets beyond shellenv.VAR_NAMES (when the listener is reachable).
API_VARS = ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")
PROXY_USER = "tokn"
# Placeholder API key exported when the server has none (loopback use): the
# SDKs refuse to start without one, and a real key must never go to tokn.
NO_KEY = "tokn"

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")
_PORT_RE = re.compile(r"^[0-9]{1,5}$")
_NUMERIC_TLD_RE = re.compile(r"(?:^|\.)[0-9]+\.?$")


class BadHost(ValueError):
    """The Host header is not ``hostname|IPv4|[IPv6]`` with an optional port."""


@dataclass(frozen=True)
class HostPort:
    """A validated ``Host`` header."""

    host: str  # bare: "example.lan", "10.0.0.5", "fe80::1"
    port: int | None

    @property
    def url_host(self) -> str:
        """``host`` as it goes into a URL (IPv6 in brackets)."""
        return f"[{self.host}]" if ":" in self.host else self.host

    def origin(self, port: int | None = None) -> str:
        port = self.port if port is None else port
        return f"http://{self.url_host}" + (f":{port}" if port and port != 80 else "")

    @property
    def slug(self) -> str:
        """A file-name-safe ``HOST-PORT`` (the client-side directory name)."""
        return re.sub(r"[^A-Za-z0-9.-]", "_", f"{self.host}-{self.port or 80}")


def parse_host(value: str | None) -> HostPort:
    """Strictly validate a ``Host`` header: a DNS name, an IPv4 literal or a
    bracketed IPv6 literal, then optionally ``:PORT`` (1-65535).  Anything
    else (userinfo, paths, spaces, control characters, several hosts, zone
    ids, non-ASCII, percent-encoding) raises :class:`BadHost`."""
    if not value:
        raise BadHost("the request has no Host header")
    if len(value) > 262 or not value.isascii() or any(
            ord(c) <= 32 or ord(c) == 127 for c in value):
        raise BadHost("the Host header contains characters a host name cannot have")
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise BadHost("unterminated IPv6 literal in the Host header")
        literal, rest = value[1:end], value[end + 1:]
        if "%" in literal:
            raise BadHost("IPv6 zone ids are not accepted in the Host header")
        try:
            host = ipaddress.IPv6Address(literal).compressed
        except ValueError:
            raise BadHost("the Host header's bracketed part is not an IPv6 address") from None
    else:
        if value.count(":") > 1:
            raise BadHost("an IPv6 address in the Host header must be in brackets")
        name, sep, port_text = value.partition(":")
        rest = sep + port_text
        if _NUMERIC_TLD_RE.search(name):
            try:
                host = str(ipaddress.IPv4Address(name.rstrip(".")))
            except ValueError:
                raise BadHost("the Host header is not a valid IPv4 address") from None
        elif _HOSTNAME_RE.match(name) and len(name.rstrip(".")) <= 253:
            host = name.rstrip(".").lower()
        else:
            raise BadHost("the Host header is not a valid host name")
    if not rest:
        return HostPort(host, None)
    port = parse_port(rest[1:]) if rest.startswith(":") else None
    if port is None:
        raise BadHost("the Host header's port is not a number from 1 to 65535")
    return HostPort(host, port)


def parse_port(text: str | None) -> int | None:
    """``text`` as a TCP port (1-65535, digits only), else ``None``."""
    if not text or not _PORT_RE.match(text):
        return None
    port = int(text)
    return port if 1 <= port <= 65535 else None


def port_of(url: str | None) -> int | None:
    """The port of ``http://host:port`` (``None`` for empty or port-less URLs)."""
    if not url:
        return None
    rest = url.split("://", 1)[-1].split("/", 1)[0]
    return parse_port(rest.rpartition(":")[2]) if ":" in rest else None


def bootstrap(hp: HostPort, *, request_port: int, api_port: int | None, proxy_port: int | None,
              ca_sha256: str, key_required: bool) -> dict[str, object]:
    """What ``/-/lan/bootstrap.json`` returns.  ``request_port`` is the port
    the request reached (helper URLs stay on it: the proxy port forwards
    ``/-/lan/`` GETs to the listener)."""
    here = hp.origin(request_port)
    return {
        "api_url": hp.origin(api_port) if api_port else None,
        "proxy_url": hp.origin(proxy_port) if proxy_port else None,
        "ca_cert_url": here + CA_PATH,
        "env_url": here + ENV_PATH,
        "ca_sha256": ca_sha256,
        "api_key_required": key_required,
        "shells": list(SHELLS),
    }


def fingerprint_hex(fingerprint: str) -> str:
    """``AB:CD:..`` -> ``abcd..`` (what ``sha256sum`` prints)."""
    value = fingerprint.replace(":", "").strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError(f"not a SHA-256 fingerprint: {fingerprint!r}")
    return value


def proxy_url_with_key(proxy_url: str, key: str | None, user: str = PROXY_USER) -> str:
    """``http://USER:KEY@host:port`` (both percent-encoded) when ``key``; the
    user is ``tokn`` for the admin key, the key's name for a person's."""
    if not key:
        return proxy_url
    scheme, _, rest = proxy_url.partition("://")
    return f"{scheme}://{quote(user, safe='')}:{quote(key, safe='')}@{rest}"


# --- env scripts ------------------------------------------------------------------------

BUNDLE_FILE = "ca-bundle.crt"
CA_FILE = "ca.crt"
_DIR_MARK = "\x00TOKN_LAN_DIR\x00/"


@dataclass(frozen=True)
class EnvSpec:
    """Everything one env script needs."""

    hp: HostPort  # the server as the client addressed it
    ca_cert_url: str
    ca_sha256: str  # AB:CD:... over the DER (openssl x509 -fingerprint -sha256)
    proxy_url: str | None  # http://host:port, no credentials
    api_url: str | None
    api_key: str | None = None  # set only when the request authenticated with it
    proxy_user: str = PROXY_USER  # a person's key goes with its name (team mode)

    def pairs(self) -> list[tuple[str, str]]:
        """Variable/value pairs; values under the client's directory start with
        an internal marker that :func:`env_script` turns into a path."""
        out: list[tuple[str, str]] = []
        if self.proxy_url:
            out += shellenv.env_vars(proxy_url_with_key(self.proxy_url, self.api_key,
                                                        self.proxy_user),
                                     _DIR_MARK + CA_FILE, _DIR_MARK + BUNDLE_FILE,
                                     [self.hp.host])
        else:  # no proxy to reach: only the trust variables
            proxy_vars = {"HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "NODE_USE_ENV_PROXY"}
            out += [(k, v) for k, v in shellenv.env_vars("", _DIR_MARK + CA_FILE,
                                                         _DIR_MARK + BUNDLE_FILE)
                    if k.upper() not in proxy_vars]
        if self.api_url:
            key = self.api_key or NO_KEY
            out += [("OPENAI_BASE_URL", self.api_url + "/v1"),
                    ("ANTHROPIC_BASE_URL", self.api_url),
                    ("OPENAI_API_KEY", key), ("ANTHROPIC_API_KEY", key)]
        return out

    def var_names(self) -> list[str]:
        return [k for k, _ in self.pairs()]


def _exports(shell: str, pairs: Iterable[tuple[str, str]], dir_ref: str) -> list[str]:
    """Export lines via :func:`shellenv.render`; values under the client dir
    become ``<dir_ref><quoted suffix>`` (per-shell concatenation)."""
    family = shellenv.shell_family(shell)
    lines: list[str] = []
    for name, value in pairs:
        if not value.startswith(_DIR_MARK):
            lines.append(shellenv.render(shell, [(name, value)]).rstrip("\n"))
            continue
        suffix = "/" + value[len(_DIR_MARK):]
        if family == "fish":
            lines.append(f"set -gx {name} {dir_ref}{shellenv.quote_fish(suffix)}")
        elif family == "pwsh":
            lines.append(f"$Env:{name} = {dir_ref} + {shellenv.quote_pwsh(suffix)}")
        else:
            lines.append(f"export {name}={dir_ref}{shellenv.quote_sh(suffix)}")
    return lines


def _indent(lines: Iterable[str], by: str = "    ") -> str:
    return "\n".join(by + line if line else line for line in lines)


def env_script(shell: str, spec: EnvSpec) -> str:
    """The script for ``shell`` (sh, bash, zsh, fish, pwsh); ValueError if unknown."""
    family = shellenv.shell_family(shell)
    if family == "fish":
        return _fish(spec)
    if family == "pwsh":
        return _pwsh(spec)
    return _sh(spec)


def _header(spec: EnvSpec, comment: str = "#") -> str:
    return (f"{comment} tokn LAN environment for {spec.hp.origin()} (generated by tokn).\n"
            f"{comment} Downloads tokn's CA, checks SHA-256 {spec.ca_sha256},\n"
            f"{comment} and only then points this shell's clients at tokn.\n")


def _sh(spec: EnvSpec) -> str:
    q = shellenv.quote_sh
    want = fingerprint_hex(spec.ca_sha256)
    roots = " ".join(q(p) for p in SYSTEM_BUNDLES)
    exports = _exports("sh", spec.pairs(), '"$__tokn_dir"')
    body = f"""\
__tokn_dir="${{XDG_CONFIG_HOME:-$HOME/.config}}/tokn/lan/"{q(spec.hp.slug)}
__tokn_fail() {{ echo "tokn: $*" >&2; rm -f "$__tokn_dir/ca.crt.download" "$__tokn_dir/ca.b64" "$__tokn_dir/ca.der" "$__tokn_dir/ca-bundle.crt.tmp"; return 1; }}
mkdir -p "$__tokn_dir" || {{ __tokn_fail "cannot create $__tokn_dir"; return 1; }}
chmod 700 "$__tokn_dir" 2>/dev/null
curl -fsS --noproxy '*' --proto '=http,https' -o "$__tokn_dir/ca.crt.download" {q(spec.ca_cert_url)} \\
    || {{ __tokn_fail "could not download the CA from "{q(spec.ca_cert_url)}; return 1; }}
sed -e '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/!d' -e '/-----/d' \\
    "$__tokn_dir/ca.crt.download" | tr -d ' \\t\\r\\n' > "$__tokn_dir/ca.b64"
base64 -d < "$__tokn_dir/ca.b64" > "$__tokn_dir/ca.der" 2>/dev/null \\
    || base64 --decode < "$__tokn_dir/ca.b64" > "$__tokn_dir/ca.der" 2>/dev/null \\
    || openssl base64 -d -A -in "$__tokn_dir/ca.b64" -out "$__tokn_dir/ca.der" 2>/dev/null \\
    || {{ __tokn_fail "cannot decode the CA (need base64 or openssl)"; return 1; }}
__tokn_got=$( {{ sha256sum < "$__tokn_dir/ca.der" 2>/dev/null \\
    || shasum -a 256 < "$__tokn_dir/ca.der" 2>/dev/null \\
    || openssl dgst -sha256 -r < "$__tokn_dir/ca.der" 2>/dev/null; }} | cut -c1-64)
if [ "$__tokn_got" != {q(want)} ]; then
    __tokn_fail "CA FINGERPRINT MISMATCH: expected SHA-256 {spec.ca_sha256}, the server sent ${{__tokn_got:-nothing usable}}. Nothing was changed; do not trust this network path."
    return 1
fi
rm -f "$__tokn_dir/ca.b64" "$__tokn_dir/ca.der"
mv -f "$__tokn_dir/ca.crt.download" "$__tokn_dir/ca.crt" || {{ __tokn_fail "cannot write $__tokn_dir/ca.crt"; return 1; }}
__tokn_roots=
for __tokn_f in {roots}; do
    if [ -s "$__tokn_f" ]; then __tokn_roots=$__tokn_f; break; fi
done
if [ -z "$__tokn_roots" ]; then
    __tokn_roots=$(python3 -c 'import certifi; print(certifi.where())' 2>/dev/null)
fi
[ -n "$__tokn_roots" ] && [ -s "$__tokn_roots" ] \\
    || {{ __tokn_fail "found no system root certificates bundle to merge the CA into"; return 1; }}
{{ cat "$__tokn_roots" && printf '\\n# tokn LAN CA (SHA-256 %s)\\n' {q(spec.ca_sha256)} \\
    && cat "$__tokn_dir/ca.crt"; }} > "$__tokn_dir/ca-bundle.crt.tmp" \\
    && mv -f "$__tokn_dir/ca-bundle.crt.tmp" "$__tokn_dir/ca-bundle.crt" \\
    || {{ __tokn_fail "cannot write $__tokn_dir/ca-bundle.crt"; return 1; }}
{chr(10).join(exports)}
echo "tokn: this shell now uses tokn at "{q(spec.hp.origin())}" (CA SHA-256 {spec.ca_sha256})" >&2
return 0"""
    return (_header(spec) + "__tokn_lan_setup() {\n" + _indent(body.splitlines()) + "\n}\n"
            "if __tokn_lan_setup; then __tokn_rc=0; else __tokn_rc=1; fi\n"
            "unset -f __tokn_lan_setup __tokn_fail\n"
            "unset __tokn_dir __tokn_got __tokn_roots __tokn_f\n"
            '[ "$__tokn_rc" = 0 ] && unset __tokn_rc || { unset __tokn_rc; false; }\n')


def _fish(spec: EnvSpec) -> str:
    q = shellenv.quote_fish
    want = fingerprint_hex(spec.ca_sha256)
    roots = " ".join(q(p) for p in SYSTEM_BUNDLES)
    exports = _exports("fish", spec.pairs(), '"$__tokn_dir"')
    body = f"""\
set -l base $HOME/.config
if test -n "$XDG_CONFIG_HOME"; set base $XDG_CONFIG_HOME; end
set -g __tokn_dir $base/tokn/lan/{q(spec.hp.slug)}
function __tokn_fail
    echo "tokn: $argv" >&2
    rm -f $__tokn_dir/ca.crt.download $__tokn_dir/ca.b64 $__tokn_dir/ca.der $__tokn_dir/ca-bundle.crt.tmp
    return 1
end
mkdir -p $__tokn_dir; or begin; __tokn_fail "cannot create $__tokn_dir"; return 1; end
chmod 700 $__tokn_dir 2>/dev/null
curl -fsS --noproxy '*' --proto '=http,https' -o $__tokn_dir/ca.crt.download {q(spec.ca_cert_url)}
or begin; __tokn_fail "could not download the CA from "{q(spec.ca_cert_url)}; return 1; end
sed -e '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/!d' -e '/-----/d' $__tokn_dir/ca.crt.download | tr -d ' \\t\\r\\n' > $__tokn_dir/ca.b64
base64 -d < $__tokn_dir/ca.b64 > $__tokn_dir/ca.der 2>/dev/null
or base64 --decode < $__tokn_dir/ca.b64 > $__tokn_dir/ca.der 2>/dev/null
or openssl base64 -d -A -in $__tokn_dir/ca.b64 -out $__tokn_dir/ca.der 2>/dev/null
or begin; __tokn_fail "cannot decode the CA (need base64 or openssl)"; return 1; end
set -l got (begin; sha256sum < $__tokn_dir/ca.der 2>/dev/null; or shasum -a 256 < $__tokn_dir/ca.der 2>/dev/null; or openssl dgst -sha256 -r < $__tokn_dir/ca.der 2>/dev/null; end | cut -c1-64)
if test "$got" != {q(want)}
    __tokn_fail "CA FINGERPRINT MISMATCH: expected SHA-256 {spec.ca_sha256}, the server sent $got. Nothing was changed; do not trust this network path."
    return 1
end
rm -f $__tokn_dir/ca.b64 $__tokn_dir/ca.der
mv -f $__tokn_dir/ca.crt.download $__tokn_dir/ca.crt; or begin; __tokn_fail "cannot write $__tokn_dir/ca.crt"; return 1; end
set -l roots
for f in {roots}
    if test -s $f; set roots $f; break; end
end
if test -z "$roots"; set roots (python3 -c 'import certifi; print(certifi.where())' 2>/dev/null); end
if test -z "$roots"; or not test -s "$roots"
    __tokn_fail "found no system root certificates bundle to merge the CA into"; return 1
end
begin; cat $roots; and printf '\\n# tokn LAN CA (SHA-256 %s)\\n' {q(spec.ca_sha256)}; and cat $__tokn_dir/ca.crt; end > $__tokn_dir/ca-bundle.crt.tmp
and mv -f $__tokn_dir/ca-bundle.crt.tmp $__tokn_dir/ca-bundle.crt
or begin; __tokn_fail "cannot write $__tokn_dir/ca-bundle.crt"; return 1; end
{chr(10).join(exports)}
echo "tokn: this shell now uses tokn at "{q(spec.hp.origin())}" (CA SHA-256 {spec.ca_sha256})" >&2
return 0"""
    return (_header(spec) + "function __tokn_lan_setup\n" + _indent(body.splitlines())
            + "\nend\n"
            "__tokn_lan_setup\n"
            "set -l __tokn_rc $status\n"
            "functions -e __tokn_lan_setup __tokn_fail\n"
            "set -e __tokn_dir\n"
            "test $__tokn_rc -eq 0\n")


def _pwsh(spec: EnvSpec) -> str:
    q = shellenv.quote_pwsh
    want = fingerprint_hex(spec.ca_sha256)
    roots = ", ".join(q(p) for p in SYSTEM_BUNDLES)
    exports = _exports("pwsh", spec.pairs(), "$dir")
    body = f"""\
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
function Fail([string]$msg) {{
    [Console]::Error.WriteLine("tokn: $msg")
    Remove-Item -Force -ErrorAction SilentlyContinue $tmp
    throw "tokn: $msg"
}}
$onWindows = ($env:OS -eq 'Windows_NT')
if ($onWindows -and $env:APPDATA) {{ $base = $env:APPDATA }}
elseif ($env:XDG_CONFIG_HOME) {{ $base = $env:XDG_CONFIG_HOME }}
else {{ $base = Join-Path $HOME '.config' }}
$dir = Join-Path (Join-Path (Join-Path $base 'tokn') 'lan') {q(spec.hp.slug)}
New-Item -ItemType Directory -Force -Path $dir | Out-Null
$tmp = Join-Path $dir 'ca.crt.download'
try {{ Invoke-WebRequest -UseBasicParsing -Uri {q(spec.ca_cert_url)} -OutFile $tmp }}
catch {{ Fail ("could not download the CA from " + {q(spec.ca_cert_url)} + ": $_") }}
$pem = [IO.File]::ReadAllText($tmp)
$blocks = [regex]::Matches($pem, '-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\\s]+)-----END CERTIFICATE-----')
$got = ''
if ($blocks.Count -eq 1) {{
    $der = [Convert]::FromBase64String(($blocks[0].Groups[1].Value -replace '\\s', ''))
    $sha = [Security.Cryptography.SHA256]::Create()
    $got = -join ($sha.ComputeHash($der) | ForEach-Object {{ $_.ToString('x2') }})
}}
if ($got -ne {q(want)}) {{
    Fail ("CA FINGERPRINT MISMATCH: expected SHA-256 {spec.ca_sha256}, the server sent $got. " +
          "Nothing was changed; do not trust this network path.")
}}
$ca = Join-Path $dir 'ca.crt'
Move-Item -Force $tmp $ca
$rootsPem = $null
foreach ($f in @({roots})) {{
    if ((Test-Path -PathType Leaf $f) -and (Get-Item $f).Length -gt 0) {{ $rootsPem = [IO.File]::ReadAllText($f); break }}
}}
if (-not $rootsPem -and $onWindows) {{
    $rootsPem = (Get-ChildItem Cert:\\LocalMachine\\Root | ForEach-Object {{
        "-----BEGIN CERTIFICATE-----`n" + [Convert]::ToBase64String($_.RawData, 'InsertLineBreaks') + "`n-----END CERTIFICATE-----"
    }}) -join "`n"
}}
if (-not $rootsPem) {{ Fail 'found no system root certificates bundle to merge the CA into' }}
$bundle = Join-Path $dir 'ca-bundle.crt'
[IO.File]::WriteAllText($bundle, $rootsPem + "`n# tokn LAN CA (SHA-256 {spec.ca_sha256})`n" + [IO.File]::ReadAllText($ca))
{chr(10).join(exports)}
[Console]::Error.WriteLine("tokn: this shell now uses tokn at " + {q(spec.hp.origin())} + " (CA SHA-256 {spec.ca_sha256})")"""
    return _header(spec) + "& {\n" + _indent(body.splitlines()) + "\n}\n"


def one_liner(shell: str, env_url: str, api_key: str | None = None) -> str:
    """The command a colleague pastes into ``shell`` to load the env script."""
    family = shellenv.shell_family(shell)
    url = f"{env_url}?shell={shell}"
    if family == "pwsh":
        headers = (f" -Headers @{{Authorization={shellenv.quote_pwsh('Bearer ' + api_key)}}}"
                   if api_key else "")
        return (f"Invoke-WebRequest -UseBasicParsing{headers} -Uri {shellenv.quote_pwsh(url)} "
                f"| Select-Object -ExpandProperty Content | Invoke-Expression")
    quote = shellenv.quote_fish if family == "fish" else shellenv.quote_sh
    header = f" -H {quote('Authorization: Bearer ' + api_key)}" if api_key else ""
    fetch = f"curl -fsS --noproxy '*'{header} {quote(url)}"
    if family == "fish":
        return f"{fetch} | source"
    # `|| echo false`: a failed download makes the eval fail too, not succeed silently.
    return f'eval "$({fetch} || echo false)"'
