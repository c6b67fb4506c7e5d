"""tokn's local CA: files, name constraints (real TLS handshakes), bundle, fingerprints."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from tokn import ca, certs, paths
from tokn.config import CAConfig, Config
from tokn.errors import ToknError


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    # Harmless beside tests/conftest.py's fixture; keeps this file self-contained.
    if "TOKN_HOME" not in os.environ or not os.environ["TOKN_HOME"].startswith(str(tmp_path)):
        monkeypatch.setenv("TOKN_HOME", str(tmp_path / "tokn home"))
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)


def cfg(**proxy_mode) -> Config:
    c = Config()
    for k, v in proxy_mode.items():
        setattr(c.proxy_mode, k, v)
    return c


def unconstrained() -> Config:
    c = Config()
    c.ca = CAConfig(name_constraints=False)
    return c


class TLSServer:
    """A TLS server on 127.0.0.1:0 answering each connection with a tiny HTTP 200."""

    def __init__(self, cert_pem: bytes, key_pem: bytes, tmp: Path) -> None:
        cert_file, key_file = tmp / "leaf.crt", tmp / "leaf.key"
        cert_file.write_bytes(cert_pem)
        key_file.write_bytes(key_pem)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert_file, key_file)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(4096)
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                                b"Connection: close\r\n\r\nok")
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def serve(tmp_path):
    servers: list[TLSServer] = []

    def start(hosts: list[str]) -> TLSServer:
        cert, key = certs.issue_leaf(hosts, ca=ca.load_ca(ca.ensure_ca()))
        d = tmp_path / f"srv{len(servers)}"
        d.mkdir()
        s = TLSServer(cert, key, d)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def python_handshake(bundle: Path, port: int, name: str | None, *, strict: bool = True) -> None:
    ctx = ssl.create_default_context(cafile=str(bundle))
    if strict:
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    if name is None:
        ctx.check_hostname = False
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=name) as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert tls.recv(100).startswith(b"HTTP/1.1 200")


def curl(bundle: Path, host: str, port: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--noproxy", "*", "--cacert", str(bundle),
         "--resolve", f"{host}:{port}:127.0.0.1", f"https://{host}:{port}/"],
        capture_output=True, text=True, env={"PATH": os.environ.get("PATH", "")},
    )


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")


# --- creation and files -----------------------------------------------------------------

def test_ensure_ca_creates_files_with_modes():
    files = ca.ensure_ca(cfg())
    assert files.created
    assert files.cert_path == paths.ca_dir() / "ca.crt"
    assert stat.S_IMODE(files.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.cert_path.stat().st_mode) == 0o644
    assert stat.S_IMODE(files.dir.stat().st_mode) == 0o700
    again = ca.ensure_ca(cfg())
    assert not again.created
    assert again.cert_path.read_bytes() == files.cert_path.read_bytes()


def test_ca_certificate_properties():
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    ca.ensure_ca(cfg())
    loaded = ca.load_ca()
    cert = loaded.cert
    assert isinstance(loaded.key, ec.EllipticCurvePrivateKey)
    assert loaded.key.curve.name == "secp256r1"
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    nc = cert.extensions.get_extension_for_class(x509.NameConstraints)
    assert nc.critical
    cn = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
    assert cn.startswith("tokn local CA (")
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert 3649 <= days <= 3651


def test_permitted_names_wildcards_and_minimal():
    dns, ips = certs.permitted_names(
        ["api.openai.com", "api.*.githubcopilot.com", "api.githubcopilot.com", "10.0.0.7",
         "x.api.openai.com"])
    assert dns == ["api.openai.com", "githubcopilot.com"]
    assert ips == ["10.0.0.7"]
    with pytest.raises(ToknError):
        certs.constraint_for("*")


def test_default_constraints_cover_builtin_hosts():
    ca.ensure_ca(cfg())
    nc = certs.ca_constraints(ca.load_ca().cert)
    assert "api.openai.com" in nc["dns"] and "githubcopilot.com" in nc["dns"]
    assert "openai.com" not in nc["dns"]
    assert set(nc["excluded"]) == {"0.0.0.0/0", "::/0"}
    assert ca.constraints_outdated(cfg()) == []


def test_passthrough_hosts_are_not_permitted():
    ca.ensure_ca(cfg(passthrough_hosts=["api.deepseek.com"]))
    assert "api.deepseek.com" not in certs.ca_constraints(ca.load_ca().cert)["dns"]


# --- real TLS handshakes ------------------------------------------------------------------

def test_intercepted_host_trusted_by_python_ssl(serve):
    ca.ensure_ca(cfg())
    bundle = ca.ensure_bundle(cfg())
    server = serve(["api.openai.com"])
    python_handshake(bundle, server.port, "api.openai.com")
    # the leaf for a wildcard-pattern host (githubcopilot.com subtree) too
    server2 = serve(["api.individual.githubcopilot.com"])
    python_handshake(bundle, server2.port, "api.individual.githubcopilot.com")


def test_other_host_rejected_by_python_ssl(serve):
    ca.ensure_ca(cfg())
    bundle = ca.ensure_bundle(cfg())
    server = serve(["evil.example.com"])
    with pytest.raises(ssl.SSLCertVerificationError) as exc:
        python_handshake(bundle, server.port, "evil.example.com")
    assert "name constraint" in str(exc.value).lower() or "permitted" in str(exc.value).lower()


def test_ip_leaf_rejected_by_constraints(serve):
    ca.ensure_ca(cfg())
    bundle = ca.ensure_bundle(cfg())
    server = serve(["127.0.0.1"])
    with pytest.raises(ssl.SSLCertVerificationError):
        python_handshake(bundle, server.port, None)


def test_mixed_leaf_rejected(serve):
    """A leaf naming one permitted and one foreign host is rejected as a whole."""
    ca.ensure_ca(cfg())
    bundle = ca.ensure_bundle(cfg())
    server = serve(["api.openai.com", "www.google.com"])
    with pytest.raises(ssl.SSLCertVerificationError):
        python_handshake(bundle, server.port, "api.openai.com")


def test_unconstrained_ca_accepts_any_host(serve):
    c = unconstrained()
    ca.ensure_ca(c)
    bundle = ca.ensure_bundle(c)
    assert certs.ca_constraints(ca.load_ca().cert) is None
    server = serve(["evil.example.com"])
    python_handshake(bundle, server.port, "evil.example.com")
    assert ca.constraints_outdated(c) == []


@needs_curl
def test_curl_trusts_intercepted_and_rejects_other(serve):
    ca.ensure_ca(cfg())
    bundle = ca.ensure_bundle(cfg())
    good = serve(["api.openai.com"])
    ok = curl(bundle, "api.openai.com", good.port)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "ok"
    bad = serve(["evil.example.com"])
    refused = curl(bundle, "evil.example.com", bad.port)
    assert refused.returncode == 60, refused.stderr  # peer certificate cannot be authenticated


@needs_curl
def test_curl_accepts_any_host_when_unconstrained(serve):
    c = unconstrained()
    ca.ensure_ca(c)
    bundle = ca.ensure_bundle(c)
    server = serve(["evil.example.com"])
    res = curl(bundle, "evil.example.com", server.port)
    assert res.returncode == 0, res.stderr


def test_leaf_from_other_ca_rejected(serve, tmp_path):
    ca.ensure_ca(cfg())
    bundle = ca.ensure_bundle(cfg())
    other = certs.build_ca(common_name="other", hosts=None)
    cert, key = certs.issue_leaf(["api.openai.com"], ca=other)
    d = tmp_path / "other"
    d.mkdir()
    server = TLSServer(cert, key, d)
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            python_handshake(bundle, server.port, "api.openai.com")
    finally:
        server.close()


# --- fingerprints --------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_fingerprint_matches_openssl():
    files = ca.ensure_ca(cfg())
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256",
                          "-in", str(files.cert_path)], capture_output=True, text=True,
                         check=True).stdout.strip()
    expected = out.split("=", 1)[1]
    assert ca.fingerprint_sha256(ca.load_ca().cert) == expected
    assert ca.fingerprint_sha256(files.cert_path.read_bytes()) == expected
    assert ca.fingerprint_sha256(ca.pem_to_der(files.cert_path.read_bytes())) == expected


# --- regenerate, outdated constraints ------------------------------------------------------

def test_constraints_outdated_after_adding_host():
    ca.ensure_ca(cfg())
    wider = cfg(intercept_hosts=["llm.example.org", "api.openai.com", "x.api.z.ai"])
    assert ca.constraints_outdated(wider) == ["llm.example.org"]
    # authoritative without the sidecar too
    ca.ca_files().meta_path.unlink()
    assert ca.constraints_outdated(wider) == ["llm.example.org"]
    ca.regenerate_ca(wider)
    assert ca.constraints_outdated(wider) == []
    assert "llm.example.org" in certs.ca_constraints(ca.load_ca().cert)["dns"]


def test_regenerate_changes_key_and_rebuilds_bundle():
    files = ca.ensure_ca(cfg())
    bundle = ca.ensure_bundle(cfg())
    old_pem = files.cert_path.read_bytes()
    old_key = files.key_path.read_bytes()
    ca.regenerate_ca(cfg())
    new_pem = files.cert_path.read_bytes()
    assert new_pem != old_pem and files.key_path.read_bytes() != old_key
    text = bundle.read_bytes()
    assert ca.split_pem_certs(old_pem)[0] not in text
    assert text.count(ca.split_pem_certs(new_pem)[0]) == 1
    assert stat.S_IMODE(files.key_path.stat().st_mode) == 0o600
    # mitmproxy's copy follows
    assert (files.mitm_pem_path.read_bytes().endswith(new_pem))


# --- bundle --------------------------------------------------------------------------------

def _source_certs() -> list[bytes]:
    src = ca.bundle_sources(env={})[0]
    return ca.split_pem_certs(src.read_bytes())


def test_bundle_contains_system_roots_and_ca_once():
    files = ca.ensure_ca(cfg())
    bundle = ca.ensure_bundle(cfg())
    data = bundle.read_bytes()
    ca_block = ca.split_pem_certs(files.cert_path.read_bytes())[0]
    blocks = ca.split_pem_certs(data)
    system = _source_certs()
    assert len(system) > 10
    assert all(b in blocks for b in system)
    assert blocks.count(ca_block) == 1
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o644
    # rebuilt (forced) still only once
    files.bundle_state_path.unlink()
    ca.ensure_bundle(cfg())
    assert ca.split_pem_certs(bundle.read_bytes()).count(ca_block) == 1


def test_bundle_not_rewritten_when_unchanged():
    ca.ensure_ca(cfg())
    bundle = ca.ensure_bundle(cfg())
    os.utime(bundle, ns=(1, 1))
    ca.ensure_bundle(cfg())
    assert bundle.stat().st_mtime_ns == 1


def test_bundle_rebuilt_when_source_changes(tmp_path, monkeypatch):
    ca.ensure_ca(cfg())
    system = _source_certs()
    src = tmp_path / "roots.pem"
    src.write_bytes(b"\n".join(system[:3]) + b"\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(src))
    bundle = ca.ensure_bundle(cfg())
    assert len(ca.split_pem_certs(bundle.read_bytes())) == 4
    src.write_bytes(b"\n".join(system[:5]) + b"\n")
    os.utime(src, ns=(10**18, 10**18))
    assert len(ca.split_pem_certs(ca.ensure_bundle(cfg()).read_bytes())) == 6


def test_source_already_containing_ca_not_duplicated(tmp_path, monkeypatch):
    files = ca.ensure_ca(cfg())
    ca_block = ca.split_pem_certs(files.cert_path.read_bytes())[0]
    src = tmp_path / "roots.pem"
    src.write_bytes(_source_certs()[0] + b"\n" + files.cert_path.read_bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(src))
    blocks = ca.split_pem_certs(ca.ensure_bundle(cfg()).read_bytes())
    assert blocks.count(ca_block) == 1 and len(blocks) == 2


def test_ssl_cert_file_pointing_at_own_bundle_does_not_recurse(monkeypatch):
    files = ca.ensure_ca(cfg())
    bundle = ca.ensure_bundle(cfg())
    before = ca.split_pem_certs(bundle.read_bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))  # the env block is active
    assert ca.bundle_sources()[0] != bundle
    files.bundle_state_path.unlink()
    after = ca.split_pem_certs(ca.ensure_bundle(cfg()).read_bytes())
    assert after == before
    # a copy of a tokn bundle elsewhere is recognised by its header too
    copy = files.dir.parent / "copy.crt"
    copy.write_bytes(bundle.read_bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(copy))
    assert copy not in ca.bundle_sources()


def test_bundle_falls_back_to_certifi(monkeypatch):
    import certifi

    monkeypatch.setattr(ca, "SYSTEM_BUNDLES", ())
    ca.ensure_ca(cfg())
    bundle = ca.ensure_bundle(cfg())
    assert Path(certifi.where()).read_bytes().count(b"BEGIN CERTIFICATE") + 1 == \
        bundle.read_bytes().count(b"BEGIN CERTIFICATE")


# --- mitmproxy confdir ---------------------------------------------------------------------

def test_write_mitm_confdir(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    files = ca.ensure_ca(cfg())
    confdir = tmp_path / "mitm"
    confdir.mkdir()
    (confdir / "mitmproxy-ca-cert.p12").write_bytes(b"stale")
    pem = ca.write_mitm_confdir(confdir)
    assert pem == confdir / "mitmproxy-ca.pem"
    raw = pem.read_bytes()
    key = serialization.load_pem_private_key(raw, None)
    cert = x509.load_pem_x509_certificates(raw)[0]
    assert cert == ca.load_ca().cert
    assert key.public_key() == cert.public_key()
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert (confdir / "mitmproxy-ca-cert.pem").read_bytes() == files.cert_path.read_bytes()
    assert not (confdir / "mitmproxy-ca-cert.p12").exists()


def test_mitmproxy_certstore_uses_our_ca(tmp_path):
    certs = pytest.importorskip("mitmproxy.certs")
    ca.ensure_ca(cfg())
    confdir = tmp_path / "mitm"
    ca.write_mitm_confdir(confdir)
    store = certs.CertStore.from_store(confdir, "mitmproxy", 2048)
    assert store.default_ca._cert == ca.load_ca().cert


# --- errors --------------------------------------------------------------------------------

def test_corrupt_cert_is_a_tokn_error():
    files = ca.ensure_ca(cfg())
    files.cert_path.write_text("garbage")
    with pytest.raises(ToknError, match="regenerate"):
        ca.load_ca()


def test_mismatched_key_is_a_tokn_error():
    files = ca.ensure_ca(cfg())
    other = certs.build_ca(hosts=None)
    paths.write_private(files.key_path, other.key_pem)
    with pytest.raises(ToknError, match="does not belong"):
        ca.load_ca()


def test_unreadable_key_is_a_tokn_error():
    files = ca.ensure_ca(cfg())
    files.key_path.unlink()
    files.key_path.mkdir()  # unreadable as a file, even for root
    with pytest.raises(ToknError, match="cannot read .*permissions"):
        ca.load_ca()


def test_missing_key_is_a_tokn_error():
    files = ca.ensure_ca(cfg())
    files.key_path.unlink()
    with pytest.raises(ToknError, match="regenerate"):
        ca.ensure_ca(cfg())


def test_ca_info():
    info = ca.ca_info(cfg())
    assert "tokn" in info["subject"]
    assert info["fingerprint_sha256"].count(":") == 31
    assert info["constrained"] and "api.openai.com" in info["permitted_dns"]
    assert info["files"]["bundle"].exists()
    assert info["outdated"] == []


def test_mitmproxy_minted_leaf_verifies_strictly(tmp_path):
    """A leaf mitmproxy mints from our CA (DNS name only) passes VERIFY_X509_STRICT;
    one that also carries an IP or a foreign name (upstream SANs) does not."""
    certs = pytest.importorskip("mitmproxy.certs")
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca.ensure_ca(cfg())
    bundle = ca.ensure_bundle(cfg())
    confdir = tmp_path / "mitm"
    ca.write_mitm_confdir(confdir)
    store = certs.CertStore.from_store(confdir, "mitmproxy", 2048)

    def leaf(names):
        entry = store.get_cert("api.openai.com", names)
        key = entry.privatekey.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())
        d = tmp_path / f"leaf{len(names)}"
        d.mkdir()
        return TLSServer(entry.cert.to_pem(), key, d)

    good = leaf([x509.DNSName("api.openai.com")])
    ip = leaf([x509.DNSName("api.openai.com"),
               x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    wide = leaf([x509.DNSName("api.openai.com"), x509.DNSName("*.openai.com"),
                 x509.DNSName("openai.com")])
    try:
        python_handshake(bundle, good.port, "api.openai.com", strict=True)
        for bad in (ip, wide):
            with pytest.raises(ssl.SSLCertVerificationError):
                python_handshake(bundle, bad.port, "api.openai.com")
    finally:
        for s in (good, ip, wide):
            s.close()
