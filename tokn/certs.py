"""Certificates for tokn's local CA, built in memory (pure: no files).

The CA is ECDSA P-256, valid ten years, and by default carries a critical
NameConstraints extension that permits only the hosts the proxy intercepts
(:func:`permitted_names`); leaves for tests and fake upstreams
(:func:`issue_leaf`).  Where the CA lives and how it is loaded is
:mod:`tokn.ca`'s.  ``cryptography`` is imported inside the functions, so
importing this module costs nothing.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tokn.errors import ToknError

if TYPE_CHECKING:  # pragma: no cover
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

CA_DAYS = 3650
LEAF_DAYS = 397


@dataclass
class LoadedCA:
    """A CA certificate with its private key, parsed."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)


# --- name constraints --------------------------------------------------------------

def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return None


def constraint_for(pattern: str) -> str:
    """The DNS name constraint that covers ``pattern``: the pattern itself, or
    for one with a ``*`` label, the labels after the last ``*``."""
    labels = pattern.lower().strip().rstrip(".").split(".")
    if "*" in labels:
        last = len(labels) - 1 - labels[::-1].index("*")
        labels = labels[last + 1:]
    if not labels or not all(labels):
        raise ToknError(
            f"intercept host pattern {pattern!r} cannot be expressed as a CA name constraint; "
            "fix [proxy_mode].intercept_hosts or set `[ca] name_constraints = false`.",
            code="ca_constraint",
        )
    return ".".join(labels)


def dns_covered(permitted: Iterable[str], name: str) -> bool:
    """True when DNS subtree constraints ``permitted`` allow ``name``."""
    name = name.lower().rstrip(".")
    return any(name == p or name.endswith("." + p) for p in permitted)


def permitted_names(patterns: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(dns_subtrees, ip_literals)`` a CA needs to cover ``patterns``, minimal
    (a name already inside another permitted subtree is dropped)."""
    dns: list[str] = []
    ips: list[str] = []
    for pattern in patterns:
        pattern = pattern.strip().lower()
        if not pattern:
            continue
        ip = _ip(pattern)
        if ip is not None:
            if str(ip) not in ips:
                ips.append(str(ip))
            continue
        name = constraint_for(pattern)
        if name not in dns:
            dns.append(name)
    minimal = [n for n in dns if not dns_covered([p for p in dns if p != n], n)]
    return sorted(minimal), ips


def uncovered(patterns: Iterable[str], dns: Iterable[str], ips: Iterable[str]) -> list[str]:
    """The patterns that DNS subtrees ``dns`` and IP literals ``ips`` don't cover."""
    dns, ips = list(dns), set(ips)
    out = []
    for pattern in patterns:
        ip = _ip(pattern)
        if ip is not None:
            if str(ip) not in ips:
                out.append(pattern)
        elif not dns_covered(dns, constraint_for(pattern)):
            out.append(pattern)
    return out


def _hostname_label() -> str:
    import socket

    try:
        host = socket.gethostname().split(".")[0]
    except OSError:  # pragma: no cover
        host = ""
    return host or "localhost"


def default_common_name() -> str:
    return f"tokn local CA ({_hostname_label()})"[:64]


# --- building certificates ---------------------------------------------------------

# --- building certificates (cryptography, imported lazily) ----------------------------

def _key_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _new_key() -> ec.EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0)


def build_ca(
    *,
    common_name: str | None = None,
    hosts: Iterable[str] | None = None,
    key: ec.EllipticCurvePrivateKey | None = None,
    days: int = CA_DAYS,
    now: _dt.datetime | None = None,
) -> LoadedCA:
    """A new self-signed CA in memory.  ``hosts`` (intercept patterns) adds a
    critical NameConstraints extension; ``None`` leaves the CA unconstrained."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = key or _new_key()
    now = now or _now()
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name or default_common_name()),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tokn"),
    ])
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(hours=1))
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        # Only TLS server certificates: no code signing, S/MIME or client auth.
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False
        )
    )
    if hosts is not None:
        dns, ips = permitted_names(hosts)
        permitted: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
        permitted += [x509.IPAddress(ipaddress.ip_network(i)) for i in ips]
        excluded: list[x509.GeneralName] | None = None
        if not ips:
            # With no IP subtree listed, RFC 5280 leaves IP SANs unconstrained.
            excluded = [x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")),
                        x509.IPAddress(ipaddress.ip_network("::/0"))]
        builder = builder.add_extension(
            x509.NameConstraints(permitted_subtrees=permitted or None,
                                 excluded_subtrees=excluded),
            critical=True,
        )
    cert = builder.sign(key, hashes.SHA256())
    return LoadedCA(cert=cert, key=key)


def ca_constraints(cert: x509.Certificate) -> dict[str, list[str]] | None:
    """``{"dns": [...], "ip": [...], "excluded": [...]}`` or ``None`` when the
    certificate has no NameConstraints."""
    from cryptography import x509

    try:
        nc = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return None
    out: dict[str, list[str]] = {"dns": [], "ip": [], "excluded": []}
    for gn in nc.permitted_subtrees or []:
        if isinstance(gn, x509.DNSName):
            out["dns"].append(gn.value.lower())
        elif isinstance(gn, x509.IPAddress):
            net = gn.value
            out["ip"].append(str(net.network_address) if net.prefixlen == net.max_prefixlen
                             else str(net))
    out["excluded"] = [str(gn.value) for gn in nc.excluded_subtrees or []]
    return out


def issue_leaf(
    hosts: list[str],
    *,
    ca: LoadedCA,
    days: int = LEAF_DAYS,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> tuple[bytes, bytes]:
    """``(cert_pem, key_pem)`` of a TLS server certificate for ``hosts`` (DNS
    names or IP literals) signed by ``ca`` (tokn's: :func:`tokn.ca.load_ca`).
    For tests and fake upstreams; mitmproxy mints its own leaves."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not hosts:
        raise ValueError("issue_leaf needs at least one host")
    key = key or _new_key()
    now = _now()
    sans: list[x509.GeneralName] = []
    for host in hosts:
        ip = _ip(host)
        sans.append(x509.IPAddress(ip) if ip is not None else x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64])]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(hours=1))
        .not_valid_after(min(now + _dt.timedelta(days=days), ca.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)
