"""This machine's address on the LAN, found without sending anything (for
``tokn lan url`` and the listener's start-up lines)."""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import subprocess


def _usable(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified)


def addresses_from_ip_json(data: list[dict]) -> list[str]:
    """Usable addresses from ``ip -j addr`` output: interfaces that are up,
    global scope, IPv4 first (pure; no traffic)."""
    v4: list[str] = []
    v6: list[str] = []
    for link in data:
        if "UP" not in link.get("flags", []) or "LOOPBACK" in link.get("flags", []):
            continue
        for info in link.get("addr_info", []):
            local = info.get("local", "")
            if info.get("scope", "global") != "global" or not _usable(local):
                continue
            (v4 if info.get("family") == "inet" else v6).append(local)
    return v4 + v6


def guess_lan_host() -> str:
    """This machine's first non-loopback address, without sending anything:
    ``ip -j addr`` when available, else the host name's resolution, else the
    host name itself."""
    ip_cmd = shutil.which("ip")
    if ip_cmd:
        try:
            out = subprocess.run([ip_cmd, "-j", "addr"], capture_output=True, text=True,
                                 timeout=5, check=True).stdout
            found = addresses_from_ip_json(json.loads(out))
            if found:
                return found[0]
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    name = socket.gethostname()
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except OSError:
        return name
    found = [str(info[4][0]) for info in infos if _usable(str(info[4][0]))]
    found.sort(key=lambda a: ":" in a)
    return found[0] if found else name
