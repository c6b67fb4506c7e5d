"""The home's lock, PID and status files (:mod:`tokn.instance`) and the port
checks (:mod:`tokn.ports`), without a server."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import pytest

from tokn import instance, ports
from tokn.errors import ToknError

HOLD = """
import sys, time
from tokn import instance
lock = instance.acquire()
print("held" if lock else "refused", flush=True)
if lock:
    sys.stdin.readline()
"""


def test_one_holder_per_home_and_its_pid_is_the_answer(tokn_home):
    proc = subprocess.Popen([sys.executable, "-c", HOLD], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert proc.stdout.readline().strip() == "held"
        assert instance.holder() == proc.pid
        assert instance.acquire(timeout=0.2) is None  # not while it holds it
        found = instance.running()
        assert found.pid == proc.pid and not found.ready  # no status written yet
    finally:
        proc.stdin.close()
        proc.wait(30)
    assert instance.holder() is None  # gone with the process (no clean-up needed)
    lock = instance.acquire()
    assert lock is not None and instance.holder() == os.getpid()
    instance.write_status({"pid": os.getpid(), "listener": {"url": "http://x:1",
                                                            "host": "x", "port": 1}})
    assert instance.running().ready and instance.running().address("listener") == ("x", 1)
    lock.release()
    assert instance.holder() is None and not instance.status_path().exists()
    assert instance.pid_path().read_text() == ""


def test_a_status_file_of_another_pid_is_not_believed(tokn_home):
    lock = instance.acquire()
    try:
        instance.write_status({"pid": os.getpid() + 1, "listener": {"port": 1}})
        found = instance.running()
        assert found.pid == os.getpid() and found.status == {} and not found.ready
    finally:
        lock.release()


def test_supervisor_comes_from_the_environment_only_when_known():
    assert instance.supervisor({}) == "foreground"
    assert instance.supervisor({"TOKN_SUPERVISOR": "systemd"}) == "systemd"
    assert instance.supervisor({"TOKN_SUPERVISOR": "cron"}) == "foreground"


def test_a_taken_port_is_port_in_use_and_port_zero_is_free():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ports.PortInUse) as caught:
            ports.bind("the listener", "127.0.0.1", port)
        assert (caught.value.what, caught.value.port) == ("the listener", port)
        assert str(caught.value) == f"the listener cannot listen on 127.0.0.1:{port}: the " \
                                    "port is in use"
        with pytest.raises(ports.PortInUse):
            ports.check_free("the proxy", "127.0.0.1", port)
        assert ports.accepts("127.0.0.1", port)
    assert not ports.accepts("127.0.0.1", port)
    ports.check_free("the proxy", "127.0.0.1", 0)
    socks = ports.bind("the listener", "localhost", 0)
    try:  # every address of the name, on one port
        assert len({s.getsockname()[1] for s in socks}) == 1
    finally:
        for s in socks:
            s.close()


def test_an_address_that_is_not_this_machine_s_is_one_clear_error():
    with pytest.raises(ToknError) as caught:
        ports.bind("the listener", "192.0.2.1", 0)  # TEST-NET-1: not ours
    assert caught.value.message.startswith("the listener cannot listen on 192.0.2.1:0: ")
    assert not isinstance(caught.value, ports.PortInUse)


def test_connections_accepted_on_bound_sockets_send_without_delay():
    """Accepted connections get TCP_NODELAY from asyncio: a response written as
    head then body must not wait for the client's delayed ACK (40 ms)."""
    async def accepted_nodelay() -> int:
        sock = ports.bind("the listener", "127.0.0.1", 0)[0]
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            raw = writer.get_extra_info("socket")
            seen.set_result(raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_client, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            try:
                return await asyncio.wait_for(seen, 5)
            finally:
                writer.close()

    assert asyncio.run(accepted_nodelay()) != 0
