"""What the benchmarks share: the fast upstream, a tokn server, a raw client, hey.

* :func:`fast_upstream` runs ``bench/fast_upstream.py`` as its own process;
* :func:`tokn_server` runs ``tokn serve --with-proxy`` as its own process (free
  ports, a temporary ``TOKN_HOME``, one ``openai-compatible`` account pointed at
  the upstream, output to a file);
* :class:`Door` is one way in (direct, listener, MITM, a peer): where to send,
  what, and which process serves it;
* :class:`Conn` is one keep-alive HTTP/1.1 connection on a raw socket (through
  the proxy with ``CONNECT`` + TLS against tokn's CA for MITM doors), the same
  small client for every door so that its own cost cancels out;
* :func:`hey` runs the ``hey`` load generator against a door and parses its summary.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODEL = "bench-model"
UPSTREAM_KEY = "sk-bench-upstream"


def chat_body(stream: bool = False, content: str = "ping") -> bytes:
    body: dict = {"model": MODEL, "messages": [{"role": "user", "content": content}]}
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


def messages_body(stream: bool = False, content: str = "ping") -> bytes:
    body: dict = {"model": MODEL, "max_tokens": 64,
                  "messages": [{"role": "user", "content": content}]}
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


CHAT_HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench-client"}
MESSAGES_HEADERS = {"content-type": "application/json", "x-api-key": "sk-bench-client",
                    "anthropic-version": "2023-06-01"}


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``."""
    values = sorted(values)
    return values[min(int(q * len(values)), len(values) - 1)]


# -- processes ---------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited ({proc.returncode}): {tail(log)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{proc.args!r} did not listen on {port}: {tail(log)}") \
                    from None
            time.sleep(0.05)


def tail(log: Path, n: int = 2000) -> str:
    try:
        return log.read_text(errors="replace")[-n:]
    except OSError:
        return "(no output)"


@contextlib.contextmanager
def process(cmd: list[str], log: Path, port: int, env: dict[str, str] | None = None,
            cwd: str | None = None, timeout: float = 60) -> Iterator[subprocess.Popen]:
    """Run ``cmd`` (output to ``log``) until it listens on ``port``; stop it after."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                env=env if env is not None else clean_env())
    try:
        wait_port(port, proc, log, timeout)
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def exit_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the servers a benchmark started are stopped
    (a background job ignores SIGINT)."""
    import signal

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without proxy variables (nothing here may loop through one)."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    env.update(extra)
    return env


@dataclass
class Upstream:
    url: str
    proc: subprocess.Popen


@contextlib.contextmanager
def fast_upstream(workdir: Path, *, stream_secs: float = 0.75,
                  stream_events: int = 16) -> Iterator[Upstream]:
    port = free_port()
    cmd = [sys.executable, str(ROOT / "bench" / "fast_upstream.py"), "--port", str(port),
           "--stream-secs", str(stream_secs), "--stream-events", str(stream_events)]
    with process(cmd, workdir / f"upstream-{port}.out", port) as proc:
        yield Upstream(f"http://127.0.0.1:{port}", proc)


@dataclass
class Tokn:
    api_url: str
    proxy_url: str
    proc: subprocess.Popen
    home: Path
    log: Path
    bundle: str  # CA bundle for clients of the proxy (what SSL_CERT_FILE gets)


def write_tokn_config(home: Path, upstream_url: str, settings: dict[str, object]) -> None:
    """One openai-compatible account on the upstream, usage on, plus ``settings``
    (dotted keys, e.g. ``{"logging.level": "warning"}``, to compare a setting)."""
    import tomlkit

    config: dict = {"usage": {"enabled": True}, "accounts": [{
        "id": "bench", "provider": "openai-compatible", "base_url": upstream_url + "/v1",
        "api_key": UPSTREAM_KEY, "models": [MODEL]}]}
    for key, value in settings.items():
        *tables, name = key.split(".")
        node = config
        for table in tables:
            node = node.setdefault(table, {})
        node[name] = value
    confdir = home / "config"  # TOKN_HOME=DIR keeps its config in DIR/config
    confdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = confdir / "config.toml"
    path.write_text(tomlkit.dumps(config))
    path.chmod(0o600)


@contextlib.contextmanager
def tokn_server(workdir: Path, upstream_url: str, *, python: str = sys.executable,
                settings: dict[str, object] | None = None) -> Iterator[Tokn]:
    """``tokn serve --with-proxy`` (route mode) on free ports, its own TOKN_HOME."""
    home = Path(tempfile.mkdtemp(prefix="tokn-home-", dir=workdir))
    write_tokn_config(home, upstream_url, settings or {})
    api_port, proxy_port = free_port(), free_port()
    env = clean_env(TOKN_HOME=str(home))
    cmd = [python, "-m", "tokn", "serve", "--port", str(api_port), "--with-proxy",
           "--proxy-port", str(proxy_port)]
    log = workdir / f"tokn-{api_port}.out"
    # not cwd=ROOT: `-m tokn` would import this checkout's tokn, not ``python``'s
    with process(cmd, log, api_port, env=env, cwd=str(workdir)) as proc:
        wait_port(proxy_port, proc, log)
        bundle = subprocess.run([python, "-m", "tokn", "proxy", "env"], env=env,
                                capture_output=True, text=True, check=True, timeout=60).stdout
        found = re.search(r"SSL_CERT_FILE=['\"]?([^'\"\n]+)", bundle)
        if not found:
            raise RuntimeError(f"`tokn proxy env` printed no SSL_CERT_FILE: {bundle}")
        yield Tokn(f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{proxy_port}", proc,
                   home, log, found.group(1))


# -- doors -------------------------------------------------------------------

@dataclass
class Door:
    """One way in: ``url`` (an ``https://api...`` URL with ``proxy`` for MITM doors)."""

    name: str
    url: str
    body: bytes
    stream_body: bytes
    headers: dict[str, str]
    pid: int | None = None  # the process serving it (RSS, profiles)
    proxy: str = ""
    cafile: str = ""
    kind: str = "chat"  # chat | messages

    def conn(self, timeout: float = 60) -> Conn:
        return Conn(self.url, proxy=self.proxy, cafile=self.cafile, timeout=timeout)


def tokn_doors(tokn: Tokn) -> dict[str, Door]:
    pid = tokn.proc.pid
    return {
        "listener": Door("listener", tokn.api_url + "/v1/chat/completions", chat_body(),
                         chat_body(stream=True), CHAT_HEADERS, pid),
        "messages": Door("listener messages→chat", tokn.api_url + "/v1/messages",
                         messages_body(), messages_body(stream=True), MESSAGES_HEADERS, pid,
                         kind="messages"),
        "mitm": Door("MITM route", "https://api.openai.com/v1/chat/completions", chat_body(),
                     chat_body(stream=True), CHAT_HEADERS, pid, proxy=tokn.proxy_url,
                     cafile=tokn.bundle),
        "mitm-messages": Door("MITM messages→chat", "https://api.anthropic.com/v1/messages",
                              messages_body(), messages_body(stream=True), MESSAGES_HEADERS,
                              pid, proxy=tokn.proxy_url, cafile=tokn.bundle, kind="messages"),
    }


def direct_door(upstream: Upstream) -> Door:
    return Door("direct", upstream.url + "/v1/chat/completions", chat_body(),
                chat_body(stream=True), CHAT_HEADERS, upstream.proc.pid)


# -- the raw client ----------------------------------------------------------

class Conn:
    """One keep-alive HTTP/1.1 connection: ``request`` and ``stream_lines``."""

    def __init__(self, url: str, *, proxy: str = "", cafile: str = "",
                 timeout: float = 60) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.path = parts.path or "/"
        self.tls = parts.scheme == "https"
        self.proxy = proxy
        self.cafile = cafile
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.reader = None

    def connect(self) -> None:
        target = urlsplit(self.proxy) if self.proxy else None
        addr = (target.hostname, target.port) if target else (self.host, self.port)
        sock = socket.create_connection(addr, timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if target:
            authority = f"{self.host}:{self.port}"
            sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("the proxy closed the connection on CONNECT")
                head += chunk
            if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
                raise ConnectionError(f"CONNECT refused: {head[:200]!r}")
        if self.tls:
            ctx = ssl.create_default_context(cafile=self.cafile or None)
            ctx.set_alpn_protocols(["http/1.1"])
            sock = ctx.wrap_socket(sock, server_hostname=self.host)
        self.sock = sock
        self.reader = sock.makefile("rb", buffering=65536)

    def close(self) -> None:
        if self.sock is not None:
            self.reader.close()
            self.sock.close()
            self.sock = None

    def _send(self, body: bytes, headers: dict[str, str], method: str = "POST",
              path: str = "") -> None:
        if self.sock is None:
            self.connect()
        lines = [f"{method} {path or self.path} HTTP/1.1", f"host: {self.host}",
                 f"content-length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def _head(self) -> tuple[int, dict[str, str]]:
        status_line = self.reader.readline()
        if not status_line:
            self.close()
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split()[1])
        headers = {}
        while True:
            line = self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    def _chunks(self) -> Iterator[bytes]:
        while True:
            size = int(self.reader.readline().split(b";")[0], 16)
            if size == 0:
                self.reader.readline()
                return
            data = self.reader.read(size)
            self.reader.readline()
            yield data

    def request(self, body: bytes, headers: dict[str, str], method: str = "POST",
                path: str = "") -> tuple[int, bytes]:
        reused = self.sock is not None
        try:
            self._send(body, headers, method, path)
            status, head = self._head()
        except ConnectionError:
            if not reused:
                raise
            # the server closed the idle keep-alive connection (its timeout): once more
            self.close()
            self._send(body, headers, method, path)
            status, head = self._head()
        if "content-length" in head:
            data = self.reader.read(int(head["content-length"]))
        elif head.get("transfer-encoding", "").lower() == "chunked":
            data = b"".join(self._chunks())
        else:
            data = self.reader.read()
            self.close()
        if head.get("connection", "").lower() == "close":
            self.close()
        return status, data

    def stream_lines(self, body: bytes, headers: dict[str, str]) -> Iterator[tuple[float, bytes]]:
        """Each line of a streamed answer with the time it arrived."""
        self._send(body, headers)
        status, head = self._head()
        if status != 200:
            raise RuntimeError(f"stream answered {status}")
        if head.get("transfer-encoding", "").lower() == "chunked":
            pending = b""
            for data in self._chunks():
                pending += data
                *lines, pending = pending.split(b"\n")
                now = time.perf_counter()
                for line in lines:
                    yield now, line
        else:
            length = int(head.get("content-length", -1))
            read = 0
            while length < 0 or read < length:
                line = self.reader.readline()
                if not line:
                    break
                read += len(line)
                yield time.perf_counter(), line.rstrip(b"\n")


def call_ok(conn: Conn, door: Door) -> None:
    status, data = conn.request(door.body, door.headers)
    if status != 200:
        raise RuntimeError(f"{door.name}: {status} {data[:300]!r}")


# -- hey ---------------------------------------------------------------------

HEY = shutil.which("hey")


@dataclass
class HeyResult:
    rps: float = 0.0
    p50: float = 0.0  # seconds
    p99: float = 0.0
    slowest: float = 0.0
    total: float = 0.0
    codes: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    error_kinds: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # seconds, per request (CSV mode)

    @property
    def ok(self) -> int:
        return self.codes.get("200", 0)

    @property
    def failed(self) -> int:
        return self.errors + sum(n for code, n in self.codes.items() if code != "200")


def hey_command(door: Door, args: list[str], *,
                stream: bool = False) -> tuple[list[str], dict[str, str]]:
    """``hey ARGS`` against ``door`` (``-x`` and ``SSL_CERT_FILE`` for a MITM door)."""
    if HEY is None:
        raise RuntimeError("hey is not installed (Debian: apt-get install hey)")
    cmd = [HEY, *args, "-m", "POST", "-d", (door.stream_body if stream else door.body).decode()]
    for name, value in door.headers.items():
        if name == "content-type":
            cmd += ["-T", value]
        else:
            cmd += ["-H", f"{name}: {value}"]
    env = clean_env()
    if door.proxy:
        # (hey skips certificate checks whatever SSL_CERT_FILE says; set as a client would)
        cmd += ["-x", door.proxy]
        env["SSL_CERT_FILE"] = door.cafile
    cmd.append(door.url)
    return cmd, env


def hey(door: Door, args: list[str], *, stream: bool = False, expect: int = 0,
        timeout: float = 900) -> HeyResult:
    """Run hey and read its summary; with ``expect`` (the request count), read its
    per-request CSV instead: exact percentiles, and requests missing from it
    (hey lists only those that got an answer) counted as errors."""
    cmd, env = hey_command(door, [*args, *(["-o", "csv"] if expect else [])], stream=stream)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout).stdout
    return parse_hey_csv(out, expect) if expect else parse_hey(out)


def parse_hey_csv(out: str, expect: int) -> HeyResult:
    res = HeyResult()
    ends = []
    for line in out.splitlines()[1:]:
        cols = line.split(",")
        if len(cols) < 8:
            continue
        res.times.append(float(cols[0]))
        res.codes[cols[6]] = res.codes.get(cols[6], 0) + 1
        ends.append(float(cols[7]) + float(cols[0]))
    res.errors = max(expect - len(res.times), 0)
    if res.times:
        res.p50, res.p99 = pct(res.times, 0.5), pct(res.times, 0.99)
        res.slowest, res.total = max(res.times), max(ends)
        res.rps = len(res.times) / res.total if res.total else 0.0
    return res


def parse_hey(out: str) -> HeyResult:
    res = HeyResult()

    def num(pattern: str) -> float:
        found = re.search(pattern, out)
        return float(found.group(1)) if found else 0.0

    res.rps = num(r"Requests/sec:\s+([\d.]+)")
    res.total = num(r"Total:\s+([\d.]+) secs")
    res.slowest = num(r"Slowest:\s+([\d.]+) secs")
    res.p50 = num(r"50%+ in ([\d.]+) secs")
    res.p99 = num(r"99%+ in ([\d.]+) secs")
    codes = out.split("Status code distribution:", 1)
    if len(codes) == 2:
        for code, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", codes[1]):
            res.codes[code] = int(n)
    errors = out.split("Error distribution:", 1)
    if len(errors) == 2:
        for n, kind in re.findall(r"\[(\d+)\]\s+(.+)", errors[1]):
            res.errors += int(n)
            res.error_kinds.append(kind.strip()[:160])
    return res


# -- memory ------------------------------------------------------------------

def cpu_secs(pid: int) -> float:
    """User + system CPU seconds a process (all its threads) has used so far.
    CPU per request is far less disturbed by other load on the machine than
    wall-clock figures: the one to compare two versions on a busy machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    """``VmRSS`` (or ``VmHWM``, the peak) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} for pid {pid}")


def reset_peak(pid: int) -> bool:
    """Reset a process's peak RSS (``VmHWM``) to its current RSS (Linux >= 4.0)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# -- sequential latency --------------------------------------------------------

def latency(doors: dict[str, Door], n: int, rounds: int, warm: int = 30) -> dict:
    """``n`` sequential calls per door on one keep-alive connection each, doors
    interleaved in ``rounds`` so that background load hits all alike; p50/p99,
    their excess over ``doors["direct"]``, the client's own CPU per call and the
    serving process's (``server_cpu_ms``)."""
    conns = {k: d.conn() for k, d in doors.items()}
    times: dict[str, list[float]] = {k: [] for k in doors}
    cpu = dict.fromkeys(doors, 0.0)
    server_cpu = dict.fromkeys(doors, 0.0)
    try:
        for k, d in doors.items():
            for _ in range(warm):
                call_ok(conns[k], d)
        per_round = max(n // rounds, 1)
        for _ in range(rounds):
            for k, d in doors.items():
                conn, out = conns[k], times[k]
                cpu0, server0 = time.process_time(), cpu_secs(d.pid)
                for _ in range(per_round):
                    t = time.perf_counter()
                    call_ok(conn, d)
                    out.append((time.perf_counter() - t) * 1000)
                cpu[k] += time.process_time() - cpu0
                server_cpu[k] += cpu_secs(d.pid) - server0
    finally:
        for conn in conns.values():
            conn.close()
    base = times["direct"]
    b50, b99 = statistics.median(base), pct(base, 0.99)
    rows = {}
    for k, vals in times.items():
        p50, p99 = statistics.median(vals), pct(vals, 0.99)
        rows[k] = {"name": doors[k].name, "n": len(vals), "p50_ms": round(p50, 3),
                   "p99_ms": round(p99, 3), "added_p50_ms": round(p50 - b50, 3),
                   "added_p99_ms": round(p99 - b99, 3), "x_direct_p50": round(p50 / b50, 2),
                   "client_cpu_us": round(cpu[k] / len(vals) * 1e6, 1),
                   "server_cpu_ms": round(server_cpu[k] / len(vals) * 1e3, 3)}
    return rows


def render_latency(rows: dict) -> list[str]:
    d = rows["direct"]
    lines = [f"Added latency: {d['n']} sequential warm calls per row, one keep-alive "
             f"connection each, raw-socket client ({d['client_cpu_us']} us CPU per call direct)",
             f"{'row':32} {'p50 ms':>8} {'p99 ms':>8} {'+p50':>7} {'+p99':>7} "
             f"{'p50 x direct':>12} {'server CPU ms':>13}"]
    for r in rows.values():
        lines.append(f"{r['name']:32} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
                     f"{r['added_p50_ms']:+7.2f} {r['added_p99_ms']:+7.2f} "
                     f"{r['x_direct_p50']:12.2f} {r.get('server_cpu_ms', 0):13.3f}")
    return lines
