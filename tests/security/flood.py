"""A LAN peer flooding tokn with half-sent requests (run inside a network
namespace by test_limits.py; one JSON line per step on stdout).

    python flood.py HOST API_PORT PROXY_PORT COUNT KEY

1. opens COUNT connections to each port, each sending an unfinished request
   head, and reports how many tokn still holds open after a moment;
2. waits for a line on stdin (the test checks tokn from loopback meanwhile),
   then reports how many are still open;
3. makes one complete, authenticated request to each port and reports the
   status lines.
"""

from __future__ import annotations

import base64
import json
import selectors
import socket
import sys
import time


def still_open(socks: list[socket.socket]) -> int:
    with selectors.DefaultSelector() as sel:
        for sock in socks:
            sel.register(sock, selectors.EVENT_READ)
        readable = {key.fileobj for key, _ in sel.select(timeout=0)}
    return sum(1 for s in socks if s not in readable)


def half_sent(host: str, port: int) -> socket.socket | None:
    try:
        sock = socket.create_connection((host, port), timeout=5)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
        return sock
    except OSError:
        return None


def first_line(host: str, port: int, request: bytes) -> str:
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0].decode()


def main() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    host, api, proxy, count, key = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
        int(sys.argv[4]), sys.argv[5]
    held: dict[int, list[socket.socket]] = {}
    started = time.monotonic()
    for port in (api, proxy):
        held[port] = [s for s in (half_sent(host, port) for _ in range(count)) if s]
    time.sleep(0.5)
    print(json.dumps({"held": {str(p): still_open(s) for p, s in held.items()},
                      "seconds": time.monotonic() - started}), flush=True)
    sys.stdin.readline()
    print(json.dumps({"after": {str(p): still_open(s) for p, s in held.items()}}), flush=True)
    body = b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}'
    common = (f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
              f"connection: close\r\n")
    auth = base64.b64encode(f"tokn:{key}".encode()).decode()
    listener = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}:{api}\r\n"
                f"authorization: Bearer {key}\r\n{common}\r\n").encode() + body
    proxied = (f"POST http://api.openai.com/v1/chat/completions HTTP/1.1\r\n"
               f"host: api.openai.com\r\nproxy-authorization: Basic {auth}\r\n"
               f"{common}\r\n").encode() + body
    print(json.dumps({"served": [first_line(host, api, listener),
                                 first_line(host, proxy, proxied)]}), flush=True)


if __name__ == "__main__":
    main()
