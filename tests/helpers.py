"""Run real tokn servers inside tests: a background thread with its own loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import tomlkit

from tokn import paths
from tokn.config import load_config


def write_config(data: dict[str, Any]) -> None:
    """Write ``data`` as the config file of the current TOKN_HOME."""
    paths.write_private(paths.config_file(), tomlkit.dumps(data))


def account(account_id: str, provider: str, **fields: Any) -> dict[str, Any]:
    return {"id": account_id, "provider": provider, **fields}


def stored_rows(store: Any) -> list[dict[str, Any]]:
    """Every row a :class:`~tokn.usage.UsageStore` holds, once its queue is written."""
    from tokn.usage import connect

    store.flush()
    with connect(store.path) as conn:
        return [dict(r) for r in conn.execute("SELECT * FROM requests ORDER BY id")]


@contextlib.contextmanager
def running_tokn(*, with_proxy: bool = False, api_key: str | None = None,
                 proxy_route_mode: str | None = None, listener_public: bool = True,
                 host: str = "127.0.0.1", proxy_host: str = "127.0.0.1",
                 proxy_port: int = 0, port: int = 0) -> Iterator[Any]:
    """Start listener (+ proxy) on free ports from the current config; yields a
    namespace with ``api_url``, ``proxy_url`` and ``runtime``."""
    from tokn.runtime import Bound, Runtime, serve

    cfg = load_config()
    ready = threading.Event()
    box: dict[str, Any] = {}
    loop = asyncio.new_event_loop()

    async def main() -> None:
        runtime = Runtime(cfg, api_key=api_key)
        box["runtime"] = runtime
        box["stop"] = asyncio.Event()

        def on_ready(bound: Bound) -> None:
            box["bound"] = bound
            ready.set()

        await serve(runtime, host=host, port=port, with_proxy=with_proxy, proxy_host=proxy_host,
                    proxy_port=proxy_port, proxy_route_mode=proxy_route_mode,
                    listener_public=listener_public, on_ready=on_ready, stop=box["stop"])

    def target() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # noqa: BLE001 - surfaced to the test below
            box["error"] = exc
        finally:
            ready.set()
            # as asyncio.run does: cancel what is left (live proxy connections)
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    thread = threading.Thread(target=target, daemon=True)
    # signal handlers can only be installed from the main thread; serve() tolerates that
    thread.start()
    ready.wait(30)
    if "error" in box:
        raise box["error"]

    class Handle:
        api_url = box["bound"].api_url
        proxy_url = box["bound"].proxy_url
        runtime = box["runtime"]

        @staticmethod
        def call(coro: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(coro, loop).result(30)

    try:
        yield Handle
    finally:
        loop.call_soon_threadsafe(box["stop"].set)
        thread.join(15)
        loop.close()


def usage_rows(path: Any = None) -> list[dict[str, Any]]:
    """Every row of the usage store (default: this TOKN_HOME's), oldest first."""
    import sqlite3

    from tokn.usage import default_path

    conn = sqlite3.connect(path or default_path())
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM requests ORDER BY id")]
    finally:
        conn.close()


def wait_for_rows(n: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The usage rows once there are at least ``n`` (a server commits them off
    the request path), or whatever there is after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            rows = usage_rows()
        except Exception:  # noqa: BLE001 - the store may not exist yet
            rows = []
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proxy_env(shell: str = "bash") -> dict[str, str]:
    """The environment a user's shell has after ``eval "$(tokn proxy env)"``:
    runs the real CLI and evaluates its output in real bash."""
    script = f'eval "$({sys.executable} -m tokn proxy env --shell {shell})" && env -0'
    out = subprocess.run(["bash", "-c", script], capture_output=True, check=True,
                         env=dict(os.environ), timeout=60).stdout
    after = dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)
    return {k: v for k, v in after.items() if os.environ.get(k) != v}


@contextlib.contextmanager
def applied_env(env: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_in_pty(argv: list[str], answers: dict[str, str], timeout: float = 60) -> str:
    """Run ``argv`` on a pseudo-terminal (so it sees a person at a terminal),
    type each answer when its question appears; returns everything it printed."""
    import pty  # noqa: F401 - POSIX only, like the feature under test
    import select
    import time

    master, slave = os.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                            start_new_session=True, env=dict(os.environ))
    os.close(slave)
    out, pending = b"", dict(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 4096)
                except OSError:   # EIO: the program exited and closed the terminal
                    break
                if not data:
                    break
                out += data
                for question, answer in list(pending.items()):
                    if question.encode() in out:
                        os.write(master, answer.encode() + b"\n")
                        del pending[question]
            elif proc.poll() is not None:
                break
        proc.wait(max(deadline - time.monotonic(), 1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(master)
    text = out.decode("utf-8", "replace").replace("\r\n", "\n")
    assert not pending, f"never asked {list(pending)}: {text}"
    return text


class ToknProcess:
    """A real ``tokn serve`` process (see :func:`tokn_process`)."""

    def __init__(self, proc: subprocess.Popen, log: Any, api_port: int,
                 proxy_port: int | None) -> None:
        self.proc = proc
        self.log_path = log
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.proxy_url = f"http://127.0.0.1:{proxy_port}" if proxy_port else ""

    def output(self) -> str:
        """Everything the process printed so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


@contextlib.contextmanager
def tokn_process(*, with_proxy: bool = False, args: tuple[str, ...] = ()) -> Iterator[ToknProcess]:
    """``tokn serve`` as its own process on free ports, from the current config;
    its output goes to a file (a pipe nobody reads would block it)."""
    import pathlib
    import time

    api_port = free_port()
    proxy_port = free_port() if with_proxy else None
    cmd = [sys.executable, "-m", "tokn", "serve", "--port", str(api_port), *args]
    if proxy_port:
        cmd += ["--with-proxy", "--proxy-port", str(proxy_port)]
    log = pathlib.Path(os.environ["TOKN_HOME"]) / f"serve-{api_port}.out"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    handle = ToknProcess(proc, log, api_port, proxy_port)
    try:
        deadline = time.monotonic() + 60
        for port in filter(None, (api_port, proxy_port)):
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"tokn serve exited: {handle.output()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise AssertionError(
                            f"tokn serve did not start: {handle.output()}") from None
                    time.sleep(0.05)
        yield handle
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def proxied_client(proxy_url: str, **kw: Any) -> Any:
    """An ``httpx.Client`` using tokn's proxy and trusting tokn's CA, as a
    shell after ``eval "$(tokn proxy env)"`` would."""
    import ssl

    import httpx

    from tokn.ca import ensure_ca

    ctx = ssl.create_default_context(cafile=str(ensure_ca().cert_path))
    return httpx.Client(proxy=proxy_url, verify=ctx, **kw)


def genai_exchanges(client: Any, model: str) -> None:
    """Drive an official google-genai client the ways the Gemini issue names, against
    an upstream answering as the fakes do (``echo: ...``; a weather call; ``tool
    said: ...``): non-stream, stream, a function-calling round trip and an image."""
    from google.genai import types

    assert client.models.generate_content(model=model, contents="hi").text == "echo: hi"
    chunks = list(client.models.generate_content_stream(model=model, contents="a b c"))
    assert "".join(c.text or "" for c in chunks) == "echo: a b c"
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    weather = types.Tool(function_declarations=[types.FunctionDeclaration(
        name="get_weather", description="Weather for a city",
        parameters_json_schema={"type": "object",
                                "properties": {"location": {"type": "string"}}})])
    config = types.GenerateContentConfig(tools=[weather])
    ask = types.Content(role="user", parts=[types.Part(text="what is the weather in Paris?")])
    called = client.models.generate_content(model=model, contents=[ask], config=config)
    assert called.function_calls[0].name == "get_weather"
    assert called.function_calls[0].args == {"location": "Paris", "unit": "celsius"}
    answer = types.Part.from_function_response(name="get_weather", response={"output": "sunny"})
    done = client.models.generate_content(model=model, config=config, contents=[
        ask, called.candidates[0].content, types.Content(role="user", parts=[answer])])
    assert done.text == "tool said: sunny"
    png = b"\x89PNG\r\n\x1a\n" + b"fake-image-bytes"
    seen = client.models.generate_content(model=model, contents=[
        types.Part.from_bytes(data=png, mime_type="image/png"), "what is this?"])
    assert seen.text == "echo: what is this?"
