"""tokn's local CA, the merged trust bundle, leaf issuance and fingerprints.

Files (under :func:`tokn.paths.ca_dir`, directory 0700)::

    ca.crt            the CA certificate (0644)
    ca.key            its private key, PKCS#8 PEM (0600); never served
    ca.json           small sidecar: what the CA's name constraints permit
    ca-bundle.crt     system roots + ca.crt, what SSL_CERT_FILE & co point at
    ca-bundle.json    what the bundle was built from (rebuilt when it changes)
    mitmproxy/        confdir handed to mitmproxy (mitmproxy-ca.pem = key+cert)

The CA is ECDSA P-256, valid ten years, and by default carries a critical
NameConstraints extension that permits only the hosts the proxy intercepts,
so a leaked key cannot impersonate anything else.  DNS constraints permit a
whole subtree (``api.openai.com`` also permits ``x.api.openai.com``); a
pattern with a wildcard label (``api.*.githubcopilot.com``) cannot be
expressed, so the part after the last ``*`` is permitted (``githubcopilot.com``).
IP addresses are excluded altogether unless an IP literal is intercepted:
without that, RFC 5280 would leave IP SANs unconstrained.

``cryptography`` is imported lazily: the hot path (``tokn proxy env`` at each
shell start, with the CA and bundle already in place) only stats and reads a
few small files.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokn import paths
from tokn.certs import LoadedCA, build_ca, ca_constraints, permitted_names, uncovered
from tokn.errors import ToknError

if TYPE_CHECKING:  # pragma: no cover
    from cryptography import x509

    from tokn.config import Config

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
CA_META = "ca.json"
BUNDLE = "ca-bundle.crt"
BUNDLE_STATE = "ca-bundle.json"
MITM_DIR = "mitmproxy"
MITM_PEM = "mitmproxy-ca.pem"
MITM_CERT = "mitmproxy-ca-cert.pem"
# Files mitmproxy creates only when it makes its own CA; stale copies would
# hold a different certificate than ours, so write_mitm_confdir removes them.
_MITM_STALE = ("mitmproxy-ca-cert.cer", "mitmproxy-ca-cert.p12", "mitmproxy-ca.p12")

BUNDLE_HEADER = "# tokn merged CA bundle"

# Where distributions keep their PEM bundle of trusted roots, in the order tried.
SYSTEM_BUNDLES: tuple[str, ...] = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Arch, Gentoo, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL, CentOS
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",  # Fedora, RHEL (extracted)
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/ssl/cert.pem",  # macOS, Alpine, OpenBSD
    "/usr/local/etc/openssl/cert.pem",  # Homebrew (older)
    "/opt/homebrew/etc/openssl@3/cert.pem",  # Homebrew on Apple silicon
    "/usr/local/etc/openssl@3/cert.pem",  # Homebrew on Intel
    "/usr/local/share/certs/ca-root-nss.crt",  # FreeBSD
)

_PEM_CERT_RE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.S
)


# --- file locations -----------------------------------------------------------------

@dataclass(frozen=True)
class CAFiles:
    """Where the CA's files live (they need not exist yet)."""

    dir: Path
    cert_path: Path
    key_path: Path
    meta_path: Path
    bundle_path: Path
    bundle_state_path: Path
    mitm_confdir: Path
    mitm_pem_path: Path
    created: bool = field(default=False, compare=False)

    @classmethod
    def at(cls, directory: Path | None = None, *, created: bool = False) -> CAFiles:
        d = Path(directory) if directory is not None else paths.ca_dir()
        return cls(
            dir=d,
            cert_path=d / CA_CERT,
            key_path=d / CA_KEY,
            meta_path=d / CA_META,
            bundle_path=d / BUNDLE,
            bundle_state_path=d / BUNDLE_STATE,
            mitm_confdir=d / MITM_DIR,
            mitm_pem_path=d / MITM_DIR / MITM_PEM,
            created=created,
        )

    def exists(self) -> bool:
        return self.cert_path.is_file() and self.key_path.is_file()


def ca_files() -> CAFiles:
    return CAFiles.at()


# --- pure helpers ---------------------------------------------------------------------

def pem_to_der(pem: bytes | str) -> bytes:
    """The DER bytes of the first certificate in ``pem`` (no cryptography import)."""
    raw = pem.encode() if isinstance(pem, str) else pem
    match = _PEM_CERT_RE.search(raw)
    if not match:
        raise ValueError("no PEM certificate found")
    body = b"".join(match.group(0).splitlines()[1:-1])
    return base64.b64decode(body, validate=False)


def split_pem_certs(data: bytes) -> list[bytes]:
    """Every ``BEGIN CERTIFICATE`` block in ``data``, newline-normalised."""
    return [b"\n".join(m.group(0).splitlines()) for m in _PEM_CERT_RE.finditer(data)]


def fingerprint_sha256(cert: x509.Certificate | bytes | str) -> str:
    """``AB:CD:...`` over the DER encoding, as ``openssl x509 -fingerprint -sha256``.

    ``cert`` is a parsed certificate, or PEM / DER bytes.
    """
    if isinstance(cert, bytes | str):
        raw = cert.encode() if isinstance(cert, str) else cert
        der = pem_to_der(raw) if b"-----BEGIN" in raw else raw
    else:
        from cryptography.hazmat.primitives import serialization

        der = cert.public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def wanted_patterns(cfg: Config) -> list[str]:
    from tokn.hosts import intercept_patterns

    return intercept_patterns(cfg.proxy_mode.intercept_hosts, cfg.proxy_mode.passthrough_hosts)


# --- the CA on disk -------------------------------------------------------------------

def _load_cfg(cfg: Config | None) -> Config:
    if cfg is not None:
        return cfg
    from tokn.config import load_config

    return load_config()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_ca(files: CAFiles, cfg: Config) -> None:
    hosts = wanted_patterns(cfg) if cfg.ca.name_constraints else None
    new = build_ca(hosts=hosts)
    cert_pem = new.cert_pem
    paths.write_private(files.key_path, new.key_pem, 0o600)
    paths.write_private(files.cert_path, cert_pem, 0o644)
    dns, ips = permitted_names(hosts) if hosts is not None else ([], [])
    meta = {"ca_sha256": _sha256(cert_pem), "constrained": hosts is not None,
            "dns": dns, "ip": ips}
    paths.write_private(files.meta_path, json.dumps(meta, indent=1) + "\n", 0o644)
    files.bundle_state_path.unlink(missing_ok=True)
    write_mitm_confdir(files.mitm_confdir, files=files)


def ensure_ca(cfg: Config | None = None) -> CAFiles:
    """The CA's files, creating the CA first if there is none.

    Fast when it exists (two stats, no parsing).  ``cfg`` (loaded when needed)
    decides the name constraints of a new CA.
    """
    files = ca_files()
    if files.exists():
        return files
    with paths.locked(files.cert_path):  # one writer at a time (two shells starting at once)
        if files.exists():
            return files
        if files.cert_path.exists() or files.key_path.exists():
            have, missing = ((files.cert_path, files.key_path) if files.cert_path.exists()
                             else (files.key_path, files.cert_path))
            raise ToknError(
                f"the tokn CA is incomplete: {have} exists but {missing} is missing; "
                "run `tokn proxy ca regenerate` to make a new CA (clients must trust it again).",
                code="ca_incomplete",
            )
        _write_ca(files, _load_cfg(cfg))
    return CAFiles.at(files.dir, created=True)


def regenerate_ca(cfg: Config | None = None) -> CAFiles:
    """Replace the CA with a new key and certificate (same paths); rebuilds the
    bundle and the default mitmproxy confdir.  Anything that trusted the old CA
    must trust the new one."""
    cfg = _load_cfg(cfg)
    files = ca_files()
    with paths.locked(files.cert_path):
        _write_ca(files, cfg)
    ensure_bundle(cfg)
    return CAFiles.at(files.dir, created=True)


def load_ca(files: CAFiles | None = None) -> LoadedCA:
    """Parse the CA certificate and key; :class:`ToknError` saying what to do if
    they are missing, unreadable, corrupt or don't belong together."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    files = files or ca_files()
    fix = "run `tokn proxy ca regenerate` to make a new CA (clients must trust it again)"
    try:
        cert_pem = files.cert_path.read_bytes()
        key_pem = files.key_path.read_bytes()
    except FileNotFoundError as exc:
        raise ToknError(f"the tokn CA file {exc.filename} is missing; {fix}.",
                        code="ca_missing") from exc
    except OSError as exc:
        raise ToknError(
            f"cannot read the tokn CA file {exc.filename} ({exc.strerror}); check its owner "
            f"and permissions (ca.key must be readable by you, mode 0600), or {fix}.",
            code="ca_unreadable",
        ) from exc
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise ToknError(f"{files.cert_path} is not a valid PEM certificate; {fix}.",
                        code="ca_corrupt") from exc
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ToknError(f"{files.key_path} is not a valid unencrypted PEM private key; {fix}.",
                        code="ca_corrupt") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ToknError(f"{files.key_path} holds an unsupported key type; {fix}.",
                        code="ca_corrupt")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != cert.public_key().public_bytes(der, spki):
        raise ToknError(f"{files.key_path} does not belong to {files.cert_path}; {fix}.",
                        code="ca_mismatch")
    return LoadedCA(cert=cert, key=key)


def _read_meta(files: CAFiles, cert_pem: bytes) -> dict[str, Any] | None:
    """The sidecar, if it describes exactly this certificate."""
    try:
        meta = json.loads(files.meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("ca_sha256") != _sha256(cert_pem):
        return None
    return meta


def _constraints_of(files: CAFiles) -> dict[str, list[str]] | None:
    cert_pem = files.cert_path.read_bytes()
    meta = _read_meta(files, cert_pem)
    if meta is not None:
        if not meta.get("constrained"):
            return None
        return {"dns": list(meta.get("dns", [])), "ip": list(meta.get("ip", []))}
    return ca_constraints(load_ca(files).cert)


def constraints_outdated(cfg: Config | None = None) -> list[str]:
    """Intercepted host patterns the existing CA's name constraints don't cover
    (empty when the CA is unconstrained or missing).  Non-empty means
    ``tokn proxy ca regenerate``."""
    cfg = _load_cfg(cfg)
    files = ca_files()
    if not files.exists():
        return []
    try:
        nc = _constraints_of(files)
    except OSError:
        return []
    if nc is None:
        return []
    return uncovered(wanted_patterns(cfg), nc["dns"], nc["ip"])


def ca_info(cfg: Config | None = None) -> dict[str, Any]:
    """What ``tokn proxy ca show`` prints (creates the CA if there is none)."""
    cfg = _load_cfg(cfg)
    files = ensure_ca(cfg)
    bundle = ensure_bundle(cfg)
    ca = load_ca(files)
    nc = ca_constraints(ca.cert)
    return {
        "subject": ca.cert.subject.rfc4514_string(),
        "not_before": ca.cert.not_valid_before_utc,
        "not_after": ca.cert.not_valid_after_utc,
        "fingerprint_sha256": fingerprint_sha256(ca.cert),
        "key_type": "ECDSA P-256" if getattr(ca.key, "curve", None) is not None
        and ca.key.curve.name == "secp256r1" else type(ca.key).__name__,
        "constrained": nc is not None,
        "permitted_dns": nc["dns"] if nc else [],
        "permitted_ip": nc["ip"] if nc else [],
        "excluded": nc["excluded"] if nc else [],
        "constraints_wanted": cfg.ca.name_constraints,
        "outdated": uncovered(wanted_patterns(cfg), nc["dns"], nc["ip"]) if nc else [],
        "files": {
            "cert": files.cert_path,
            "key": files.key_path,
            "bundle": bundle,
            "mitm_confdir": files.mitm_confdir,
        },
    }


# --- mitmproxy confdir -----------------------------------------------------------------

def mitm_confdir() -> Path:
    """The default confdir handed to mitmproxy."""
    return ca_files().mitm_confdir


def write_mitm_confdir(confdir: Path | str, *, files: CAFiles | None = None) -> Path:
    """Make mitmproxy in ``confdir`` use tokn's CA (never its own): writes
    ``mitmproxy-ca.pem`` (key + cert, 0600) and ``mitmproxy-ca-cert.pem``
    (0644), only when they differ, and removes stale mitmproxy-made copies.
    Returns the path of ``mitmproxy-ca.pem``.  No mitmproxy import."""
    confdir = Path(confdir)
    files = files or ensure_ca()
    ca = load_ca(files)  # validates that key and cert belong together
    cert_pem = files.cert_path.read_bytes()
    combined = ca.key_pem + cert_pem
    pem = confdir / MITM_PEM
    cert_only = confdir / MITM_CERT
    for target, data, mode in ((pem, combined, 0o600), (cert_only, cert_pem, 0o644)):
        try:
            same = target.read_bytes() == data
        except OSError:
            same = False
        if not same:
            paths.write_private(target, data, mode)
    for name in _MITM_STALE:
        (confdir / name).unlink(missing_ok=True)
    return pem


# --- merged trust bundle ---------------------------------------------------------------

def _is_own_bundle(path: Path, own: Path) -> bool:
    try:
        if path.resolve() == own.resolve():
            return True
        with path.open("rb") as fh:
            return fh.read(len(BUNDLE_HEADER)).decode("ascii", "replace") == BUNDLE_HEADER
    except OSError:
        return False


def bundle_sources(env: Mapping[str, str] | None = None,
                   own: Path | None = None) -> list[Path]:
    """Candidate PEM files of system roots, best first: ``$SSL_CERT_FILE`` (unless
    it is a tokn bundle, i.e. the env block is already active), the known system
    paths, then certifi's bundle."""
    env = os.environ if env is None else env
    own = own or ca_files().bundle_path
    out: list[Path] = []
    candidates = [env.get("SSL_CERT_FILE", ""), *SYSTEM_BUNDLES]
    for cand in candidates:
        if not cand:
            continue
        p = Path(cand).expanduser()
        if p.is_file() and not _is_own_bundle(p, own) and p not in out:
            out.append(p)
    import certifi

    out.append(Path(certifi.where()))
    return out


def _source_state(src: Path, ca_pem: bytes) -> dict[str, Any]:
    st = src.stat()
    return {"version": 1, "source": str(src), "source_mtime_ns": st.st_mtime_ns,
            "source_size": st.st_size, "ca_sha256": _sha256(ca_pem)}


def _read_ca_pem(files: CAFiles) -> bytes:
    """ca.crt's bytes, checked to hold a PEM certificate (no parsing)."""
    fix = "run `tokn proxy ca regenerate` to make a new CA (clients must trust it again)"
    try:
        data = files.cert_path.read_bytes()
    except OSError as exc:
        raise ToknError(f"cannot read {files.cert_path} ({exc.strerror}); {fix}.",
                        code="ca_unreadable") from exc
    try:
        pem_to_der(data)
    except (ValueError, TypeError) as exc:
        raise ToknError(f"{files.cert_path} is not a valid PEM certificate; {fix}.",
                        code="ca_corrupt") from exc
    return data


def build_bundle(source_pem: bytes, ca_pem: bytes, source_name: str = "") -> bytes:
    """System roots from ``source_pem`` + the tokn CA, which appears exactly once
    (copies of it already in the source are dropped).  Pure."""
    ca_der = pem_to_der(ca_pem)
    blocks = [b for b in split_pem_certs(source_pem) if pem_to_der(b) != ca_der]
    ca_block = split_pem_certs(ca_pem)[0]
    header = (f"{BUNDLE_HEADER}: system roots from {source_name or 'unknown'} + the tokn "
              f"local CA (SHA-256 {fingerprint_sha256(ca_pem)}).\n"
              "# Rebuilt automatically by tokn; do not edit.\n")
    body = b"\n".join(blocks)
    return (header.encode() + body + b"\n\n# tokn local CA\n" + ca_block + b"\n")


def ensure_bundle(cfg: Config | None = None, *, env: Mapping[str, str] | None = None) -> Path:
    """``ca/ca-bundle.crt``, (re)built when the CA or the system roots changed."""
    files = ensure_ca(cfg)
    ca_pem = _read_ca_pem(files)
    sources = bundle_sources(env, files.bundle_path)
    try:
        state = json.loads(files.bundle_state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = None
    if state is not None and files.bundle_path.is_file():
        with contextlib.suppress(OSError):
            if state == _source_state(sources[0], ca_pem):
                return files.bundle_path
    for src in sources:
        try:
            data = src.read_bytes()
        except OSError:
            continue
        if not split_pem_certs(data):
            continue
        paths.write_private(files.bundle_path, build_bundle(data, ca_pem, str(src)), 0o644)
        paths.write_private(files.bundle_state_path,
                            json.dumps(_source_state(src, ca_pem)) + "\n", 0o644)
        return files.bundle_path
    raise ToknError("found no readable bundle of system root certificates (not even "
                    "certifi's); set SSL_CERT_FILE to one and retry.", code="ca_bundle")
