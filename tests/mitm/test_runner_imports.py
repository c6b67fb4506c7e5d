"""The proxy runs on a handful of mitmproxy addons and imports only those:
not the package's ``__init__``, which pulls in every addon (Flask for the
onboarding app, ldap3 and passlib for proxy auth: ~10 MB of a running tokn)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.helpers import free_port

HEAVY = ("flask", "werkzeug", "ldap3", "passlib")


def test_a_running_proxy_imports_none_of_the_addons_it_does_not_run(tmp_path):
    api, proxy = free_port(), free_port()
    # tokn serve in the main thread (signal handlers); a thread waits for the
    # proxy to answer a CONNECT, then reports what is imported and exits
    script = textwrap.dedent(f"""
        import json, os, socket, sys, threading, time

        def report():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    with socket.create_connection(("127.0.0.1", {proxy}), timeout=2) as s:
                        s.sendall(b"CONNECT api.openai.com:443 HTTP/1.1\\r\\n"
                                  b"Host: api.openai.com:443\\r\\n\\r\\n")
                        answer = s.recv(100)
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                answer = b""
            loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
            addons = sys.modules["mitmproxy.addons"]
            print(json.dumps({{"answer": answer.decode(errors="replace"), "loaded": loaded,
                              "default_addons": hasattr(addons, "default_addons")}}),
                  flush=True)
            os._exit(0)

        threading.Thread(target=report, daemon=True).start()
        from tokn.cli import main
        sys.argv = ["tokn", "serve", "--port", "{api}", "--with-proxy",
                    "--proxy-port", "{proxy}"]
        main()
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, out.stdout + out.stderr
    seen = json.loads(lines[-1])
    assert seen["answer"].startswith("HTTP/1.1 200"), seen
    assert seen["loaded"] == [], seen
    assert seen["default_addons"] is False  # the package's __init__ never ran
