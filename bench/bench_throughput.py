"""tokn's front doors side by side with a direct call, in one run (issue 21's table).

    python bench/bench_throughput.py [--duration 8] [--rows direct,listener,mitm]
                                     [--sections latency,throughput] [--json] [--profile]

Starts the fast loopback upstream (``bench/fast_upstream.py``) and ``tokn serve
--with-proxy`` (route mode, one openai-compatible account pointed at the
upstream), each as its own process, plus the peers installed under
``bench/.peers`` (``python bench/peers.py install``).  Rows:

* ``direct``: the upstream itself (the baseline every figure is divided by);
* ``listener``: OpenAI chat into tokn's listener;
* ``messages``: Anthropic messages into the listener, OpenAI chat upstream
  (what Claude Code users run);
* ``mitm`` / ``mitm-messages``: the same through the MITM proxy in route mode
  (``HTTPS_PROXY`` + tokn's CA, ``api.openai.com`` / ``api.anthropic.com``);
* ``mitmdump``: mitmproxy alone, as shipped, with a script that only sends
  each request on to the upstream and streams the answer
  (``bench/mitmdump_forward.py``): what mitmproxy itself costs for the same
  interception, the floor under the ``mitm`` rows;
* ``litellm`` (chat) and ``ccr`` (claude-code-router, messages), when installed.

Sections:

* ``latency``: p50/p99 of sequential warm calls on one keep-alive connection
  per row (the raw-socket client of ``harness.Conn``, the same for every row;
  rows interleaved in rounds so that background load hits all alike);
* ``throughput``: ``hey -z DURATION -c 32``;
* ``streams``: ``hey -n N -c N`` of streams lasting ``--stream-secs``:
  completion p50/p99 and errors; ``--stream-events 1`` leaves each stream
  one content chunk, which isolates what a new connection costs from what
  each relayed chunk costs;
* ``memory``: RSS of each server at start; tokn's RSS every quarter of
  ``--rss-requests`` requests per door; the peak RSS added by one
  ``--body-mb`` request body (see ``memory()``); then tokn's RSS once it has
  been idle ``--idle-secs`` (it gives a burst's memory back when idle:
  ``tokn/memory.py``).

The first three also give the CPU time the serving process spent per request
(or per stream run): steadier than wall-clock figures on a shared machine.

``--profile`` adds py-spy profiles of tokn under ``hey -c 32`` load (or
``--profile-streams N`` concurrent streams), listener and MITM: the top
inclusive frames.  To compare a change: ``--python`` runs tokn from another
venv, ``--set KEY=VALUE`` sets a config key.  Figures are noisy on a shared
machine: run twice and compare.  Not a test: figures, not assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness
import peers
import pyspy
from harness import Door, call_ok, cpu_secs, hey, rss_mb

SECTIONS = ("latency", "throughput", "streams", "memory")
TOKN_ROWS = ("listener", "messages", "mitm", "mitm-messages")
PEER_ROWS = ("litellm", "ccr")
FLOOR_ROWS = ("mitmdump",)
DEFAULT_ROWS = "direct,listener,messages,mitm,mitmdump,litellm,ccr"


def note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# -- sections ----------------------------------------------------------------

def throughput(doors: dict[str, Door], secs: int, conc: int) -> dict:
    """hey for ``secs`` per row; also the CPU the serving process spent per
    request (``cpu_ms``), steadier than req/s on a busy machine."""
    rows = {}
    for k, d in doors.items():
        note(f"  throughput: {d.name}")
        cpu0 = cpu_secs(d.pid)
        r = hey(d, ["-z", f"{secs}s", "-c", str(conc), "-t", "60"])
        cpu = cpu_secs(d.pid) - cpu0
        rows[k] = {"name": d.name, "rps": round(r.rps, 1), "p50_ms": ms(r.p50),
                   "p99_ms": ms(r.p99), "ok": r.ok, "failed": r.failed,
                   "cpu_ms": round(1000 * cpu / max(r.ok, 1), 3),
                   "errors": r.error_kinds[:3]}
    base = rows["direct"]["rps"] or 1.0
    for row in rows.values():
        row["x_direct"] = round(row["rps"] / base, 4)
    return rows


def streams(doors: dict[str, Door], counts: list[int]) -> dict:
    out = {}
    for n in counts:
        rows = {}
        for k, d in doors.items():
            note(f"  {n} streams: {d.name}")
            cpu0 = cpu_secs(d.pid)
            r = hey(d, ["-n", str(n), "-c", str(n), "-t", "120"], stream=True, expect=n)
            rows[k] = {"name": d.name, "p50_s": round(r.p50, 3), "p99_s": round(r.p99, 3),
                       "max_s": round(r.slowest, 3), "wall_s": round(r.total, 2),
                       "ok": r.ok, "failed": r.failed,
                       "cpu_s": round(cpu_secs(d.pid) - cpu0, 2)}
        b = rows["direct"]
        for row in rows.values():
            row["added_p99_s"] = round(row["p99_s"] - b["p99_s"], 3)
            row["x_direct_p99"] = round(row["p99_s"] / b["p99_s"], 2) if b["p99_s"] else None
        out[str(n)] = rows
    return out


def memory(doors: dict[str, Door], tokn_pid: int, requests: int, body_mb: int,
           idle_secs: float) -> dict:
    """RSS (``/proc/PID/status``) of tokn every quarter of ``requests`` per door, and
    the peak added by one big request body: the peak RSS (``VmHWM``) is reset
    to the current RSS through ``/proc/PID/clear_refs`` just before the body is
    sent, and read once the answer is in; ``copies`` is that peak over the body
    size.  Large buffers are allocated by malloc with mmap and returned on free,
    so the peak is what the process held at once, not allocator slack."""
    out: dict = {"rss_every_quarter": {}, "big_body": {}}
    step = max(requests // 4, 1)
    for k, d in doors.items():
        if d.pid != tokn_pid or d.kind != "chat":
            continue
        note(f"  RSS over {requests} requests: {d.name}")
        series = [round(rss_mb(tokn_pid), 1)]
        for _ in range(4):
            hey(d, ["-n", str(step), "-c", "32", "-t", "60"])
            series.append(round(rss_mb(tokn_pid), 1))
        out["rss_every_quarter"][k] = {"name": d.name, "rss_mb": series}
    size = body_mb * 2**20
    for k, d in doors.items():
        if d.kind != "chat" or (d.pid != tokn_pid and k != "direct"):
            continue
        note(f"  {body_mb} MB body: {d.name}")
        body = harness.chat_body(content="x" * size)
        conn = d.conn(timeout=300)
        try:
            call_ok(conn, d)  # connection (and TLS) set up before the peak is reset
            reset = harness.reset_peak(d.pid)
            before = rss_mb(d.pid)
            t = time.perf_counter()
            status, data = conn.request(body, d.headers)
            elapsed = time.perf_counter() - t
            peak = rss_mb(d.pid, "VmHWM")
        finally:
            conn.close()
        row = {"name": d.name, "status": status, "secs": round(elapsed, 2)}
        if k != "direct":
            row.update(rss_before_mb=round(before, 1), peak_added_mb=round(peak - before, 1),
                       copies=round((peak - before) / body_mb, 2), peak_reset=reset)
        if status != 200:
            row["error"] = data[:200].decode(errors="replace")
        out["big_body"][k] = row
    if idle_secs > 0:
        note(f"  idle {idle_secs:g} s")
        time.sleep(idle_secs)
        out["rss_idle_mb"] = round(rss_mb(tokn_pid), 1)
    return out


def profile(doors: dict[str, Door], tokn_pid: int, secs: int, conc: int,
            workdir: Path, top: int, gil: bool, streams: int = 0) -> dict:
    """py-spy on tokn while hey loads the listener, then the MITM: ``conc``
    connections of small calls, or with ``streams`` that many concurrent
    streams, in waves, for as long as the sampling lasts (each door of
    listener, messages, MITM in ``doors``)."""
    out = {}
    for k in ("listener", "messages", "mitm"):
        if k not in doors:
            continue
        d = doors[k]
        note(f"  py-spy under load: {d.name}")
        if streams:
            waves = 2 + int(secs / 4)
            cmd, env = harness.hey_command(d, ["-n", str(streams * waves), "-c", str(streams),
                                               "-t", "120"], stream=True)
        else:
            cmd, env = harness.hey_command(d, ["-z", f"{secs + 3}s", "-c", str(conc)])
        log = workdir / f"hey-profile-{k}.out"
        with open(log, "w") as fh:
            load = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
        try:
            time.sleep(1.5)
            raw = pyspy.record(tokn_pid, secs, workdir / f"pyspy-{k}.txt", gil=gil)
        finally:
            if streams:
                load.terminate()  # the next door must not share the machine with these
            load.wait(secs + 120)
        total, frames = pyspy.top_frames(raw, top)
        rps = harness.parse_hey(log.read_text()).rps
        out[k] = {"name": d.name, "samples": total, "raw": str(raw), "gil_only": gil,
                  "rps_while_sampled": rps, "load": f"{streams} streams" if streams
                  else f"hey -c {conc}",
                  "top": [{"inclusive_pct": round(i, 1), "self_pct": round(s, 1), "frame": f}
                          for i, s, f in frames]}
    return out


# -- report ------------------------------------------------------------------

def render(res: dict) -> str:
    meta = res["meta"]
    lines = [f"tokn bench {meta['date']}  {meta['cpus']} CPUs  load {meta['load_before']} -> "
             f"{meta['load_after']}  Python {meta['python']}  tokn {meta['tokn_rev']}"
             + (f"  ({meta['tokn_python']} {' '.join(meta.get('settings') or [])})"
                if meta.get("settings") or meta["tokn_python"] != sys.executable else ""),
             f"hey checks certificates through the proxy: {meta.get('hey_checks_tls', 'n/a')}"]
    idle = ", ".join(f"{k} {v} MB" for k, v in res["rss_at_start_mb"].items())
    lines.append(f"RSS at start: {idle}")
    if "rss_at_end_mb" in res:
        lines.append("RSS at end: " + ", ".join(f"{k} {v} MB"
                                              for k, v in res["rss_at_end_mb"].items()))
    if "latency" in res:
        lines += ["", *harness.render_latency(res["latency"])]
    if "throughput" in res:
        lines += ["", f"Throughput: hey -z {res['meta']['duration']}s -c "
                  f"{res['meta']['concurrency']}",
                  f"{'row':32} {'req/s':>9} {'x direct':>9} {'p50 ms':>8} {'p99 ms':>8} "
                  f"{'failed':>7} {'CPU ms/req':>10}"]
        for r in res["throughput"].values():
            lines.append(f"{r['name']:32} {r['rps']:9.1f} {r['x_direct']:9.4f} "
                         f"{r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['failed']:7d} "
                         f"{r.get('cpu_ms', 0):10.3f}")
    for n, rows in res.get("streams", {}).items():
        lines += ["", f"{n} concurrent streams of {res['meta']['stream_secs']} s, "
                  f"{res['meta'].get('stream_events', 16)} content chunks each "
                  f"(hey -n {n} -c {n}): completion time",
                  f"{'row':32} {'p50 s':>7} {'p99 s':>7} {'+p99 s':>7} {'p99 x':>6} "
                  f"{'max s':>7} {'ok':>5} {'failed':>6} {'CPU s':>6}"]
        for r in rows.values():
            lines.append(f"{r['name']:32} {r['p50_s']:7.3f} {r['p99_s']:7.3f} "
                         f"{r['added_p99_s']:+7.3f} {r['x_direct_p99'] or 0:6.2f} "
                         f"{r['max_s']:7.3f} {r['ok']:5d} {r['failed']:6d} "
                         f"{r.get('cpu_s', 0):6.2f}")
    if "memory" in res:
        mem = res["memory"]
        lines += ["", "tokn RSS (MB) at start of this section, then after each quarter of "
                  f"{res['meta']['rss_requests']} requests:"]
        for r in mem["rss_every_quarter"].values():
            lines.append(f"  {r['name']:30} {' -> '.join(str(v) for v in r['rss_mb'])}")
        lines.append(f"One {res['meta']['body_mb']} MB request body: peak RSS added (VmHWM "
                     "reset just before), in body sizes:")
        for r in mem["big_body"].values():
            extra = (f"  +{r['peak_added_mb']} MB = {r['copies']} copies"
                     if "copies" in r else "")
            lines.append(f"  {r['name']:30} {r['status']} in {r['secs']} s{extra}"
                         + (f"  ({r['error']})" if "error" in r else ""))
        if "rss_idle_mb" in mem:
            lines.append(f"tokn RSS after {res['meta']['idle_secs']:g} s idle: "
                         f"{mem['rss_idle_mb']} MB")
    for r in res.get("profile", {}).values():
        which = "GIL holder only" if r.get("gil_only") else "threads not idle"
        load = r.get("load", "")
        rate = (f"{r['rps_while_sampled']:.0f} req/s while sampled; "
                if not load.endswith("streams") else "")
        lines += ["", f"py-spy ({which}): {r['name']} under {load} ({r['samples']} samples, "
                  f"{rate}raw: {r['raw']})",
                  f"{'incl %':>7} {'self %':>7}  frame"]
        lines += [f"{f['inclusive_pct']:7.1f} {f['self_pct']:7.1f}  {f['frame']}"
                  for f in r["top"]]
    return "\n".join(lines)


def hey_checks_tls(door: Door) -> bool:
    """Whether hey refuses the proxy's certificate when SSL_CERT_FILE lacks tokn's CA."""
    import dataclasses

    import certifi

    r = hey(dataclasses.replace(door, cafile=certifi.where()), ["-n", "4", "-c", "1"])
    return r.ok == 0


def settings(pairs: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set {pair!r}: use KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def meta(args: argparse.Namespace) -> dict:
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=harness.ROOT,
                         capture_output=True, text=True).stdout.strip()
    return {"date": datetime.datetime.now().isoformat(timespec="minutes"),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "tokn_python": args.python, "tokn_rev": rev, "settings": args.set,
            "load_before": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
            "duration": args.duration, "concurrency": args.concurrency,
            "stream_secs": args.stream_secs, "stream_events": args.stream_events,
            "rss_requests": args.rss_requests,
            "body_mb": args.body_mb, "idle_secs": args.idle_secs, "latency_calls": args.n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=DEFAULT_ROWS,
                        help=f"comma list, measured in this order (direct is always in, "
                             f"first); default {DEFAULT_ROWS} (peers only when installed)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help="comma list of " + ", ".join(SECTIONS) + " (or none)")
    parser.add_argument("-n", type=int, default=300, help="sequential calls per row")
    parser.add_argument("--rounds", type=int, default=5, help="latency rounds (interleaved)")
    parser.add_argument("--duration", type=int, default=8, help="seconds of hey -z per row")
    parser.add_argument("--concurrency", type=int, default=32, help="hey -c for throughput")
    parser.add_argument("--streams", default="500,100", help="concurrent stream counts")
    parser.add_argument("--stream-secs", type=float, default=0.75)
    parser.add_argument("--stream-events", type=int, default=16,
                        help="content chunks per stream (1 isolates per-connection cost)")
    parser.add_argument("--rss-requests", type=int, default=10000)
    parser.add_argument("--idle-secs", type=float, default=25.0,
                        help="memory: idle time before the last RSS reading (0: none)")
    parser.add_argument("--body-mb", type=int, default=50)
    parser.add_argument("--profile", action="store_true", help="add py-spy profiles")
    parser.add_argument("--profile-secs", type=int, default=10)
    parser.add_argument("--profile-streams", type=int, default=0, metavar="N",
                        help="profile under N concurrent streams instead of small calls")
    parser.add_argument("--gil", action="store_true",
                        help="profile only the thread holding the GIL (py-spy --gil)")
    parser.add_argument("--top", type=int, default=25, help="frames shown per profile")
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter that runs tokn (another venv, to compare)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a tokn config key for this run (VALUE read as JSON if it "
                             "parses), e.g. --set usage.enabled=false; repeatable")
    parser.add_argument("--peers-dir", type=Path, default=peers.DEFAULT_DIR)
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--render", type=Path, metavar="FILE",
                        help="only print the tables of a saved --json output")
    args = parser.parse_args()
    harness.exit_on_sigterm()
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return
    wanted = ["direct", *dict.fromkeys(r.strip() for r in args.rows.split(",")
                                       if r.strip() and r.strip() != "direct")]
    unknown = [k for k in wanted if k not in ("direct", *TOKN_ROWS, *FLOOR_ROWS, *PEER_ROWS)]
    if unknown:
        raise SystemExit(f"--rows: unknown {unknown}; rows are direct, "
                         f"{', '.join((*TOKN_ROWS, *FLOOR_ROWS, *PEER_ROWS))}")
    sections = {s.strip() for s in args.sections.split(",")} & set(SECTIONS)
    have = peers.installed(args.peers_dir)
    workdir = Path(tempfile.mkdtemp(prefix="tokn-bench-"))
    res: dict = {"meta": meta(args)}
    note(f"work dir (logs, profiles): {workdir}")
    with contextlib.ExitStack() as stack:
        up = stack.enter_context(harness.fast_upstream(workdir, stream_secs=args.stream_secs,
                                                           stream_events=args.stream_events))
        chosen = settings(args.set)
        if "memory" in sections:  # the body must fit under [server].max_body_mb (32)
            chosen.setdefault("server.max_body_mb", 2 * args.body_mb)
        tokn = stack.enter_context(harness.tokn_server(workdir, up.url, python=args.python,
                                                       settings=chosen))
        time.sleep(1.0)
        res["rss_at_start_mb"] = {"tokn": round(rss_mb(tokn.proc.pid), 1)}
        available = {"direct": harness.direct_door(up), **harness.tokn_doors(tokn)}
        if "mitmdump" in wanted:
            note("starting mitmdump")
            available["mitmdump"] = stack.enter_context(
                peers.mitmdump(workdir, up.url, args.python))
            res["rss_at_start_mb"]["mitmdump"] = round(rss_mb(available["mitmdump"].pid), 1)
        starters = {"litellm": peers.litellm, "ccr": peers.ccr}
        for name in PEER_ROWS:
            if name in wanted and have[name]:
                note(f"starting {name}")
                available[name] = stack.enter_context(
                    starters[name](workdir, up.url, args.peers_dir))
                time.sleep(1.0)
                res["rss_at_start_mb"][name] = round(rss_mb(available[name].pid), 1)
            elif name in wanted:
                note(f"({name} not installed under {args.peers_dir}: no row)")
        doors = {k: available[k] for k in wanted if k in available}  # in --rows order
        if "mitm" in doors:
            res["meta"]["hey_checks_tls"] = hey_checks_tls(doors["mitm"])
        if "latency" in sections:
            note("latency")
            res["latency"] = harness.latency(doors, args.n, args.rounds)
        if "throughput" in sections:
            note("throughput")
            res["throughput"] = throughput(doors, args.duration, args.concurrency)
        if "streams" in sections:
            note("streams")
            res["streams"] = streams(doors, list(dict.fromkeys(
                int(n) for n in args.streams.split(","))))
        if "memory" in sections:
            note("memory")
            res["memory"] = memory(doors, tokn.proc.pid, args.rss_requests, args.body_mb,
                                   args.idle_secs)
        if args.profile:
            note("profile")
            res["profile"] = profile(doors, tokn.proc.pid, args.profile_secs,
                                     args.concurrency, workdir, args.top, args.gil,
                                     args.profile_streams)
        res["rss_at_end_mb"] = {"tokn": round(rss_mb(tokn.proc.pid), 1)}
        res["rss_at_end_mb"].update({k: round(rss_mb(doors[k].pid), 1)
                                     for k in (*FLOOR_ROWS, *PEER_ROWS) if k in doors})
    res["meta"]["load_after"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(json.dumps(res, indent=2) if args.json else render(res))


if __name__ == "__main__":
    main()
