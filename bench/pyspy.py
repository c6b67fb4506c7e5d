"""py-spy, optional: sample a process under load and rank its frames.

``py-spy`` is a pip package (``pip install py-spy``); it is looked for beside
this interpreter, then on ``PATH``.  Samples are recorded as py-spy's ``raw``
(collapsed-stack) format with ``--function`` (a frame is a function, not a
line), so a file can also be fed to flamegraph.pl or speedscope.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path


def executable() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(pid: int, secs: int, out: Path, rate: int = 200, gil: bool = False) -> Path:
    """Sample ``pid`` for ``secs`` seconds at ``rate`` Hz: every thread py-spy
    does not judge idle, or with ``gil`` only the thread holding the GIL."""
    exe = executable()
    if exe is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    result = subprocess.run([exe, "record", "-r", str(rate), "-d", str(secs), "-p", str(pid),
                             "-f", "raw", "-F", "-o", str(out), *(["--gil"] if gil else [])],
                            capture_output=True, text=True, timeout=secs + 60)
    if not out.exists():
        raise RuntimeError(f"py-spy recorded nothing: {result.stdout}{result.stderr}"[-1500:])
    return out


def _frame(raw: str) -> str:
    """``func (path/to/module.py:12)`` -> ``func (to/module.py)``: short, stable keys."""
    name, _, where = raw.rpartition(" (")
    if not name:
        return raw
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    parts = path.split("/")
    return f"{name} ({'/'.join(parts[-2:])})"


# Where a stack stops being start-up scaffolding (runpy, typer, asyncio.run...):
# what is below is the work; the scaffolding is folded into one group frame.
TRUNKS = {"Handle._run (asyncio/events.py)": "[event-loop callbacks]",
          "Thread.run (threading.py)": "[other threads]"}


def _trim(frames: list[str]) -> list[str]:
    for i in range(len(frames) - 1, -1, -1):
        if frames[i] in TRUNKS:
            return [TRUNKS[frames[i]], *frames[i + 1:]]
    return frames


def top_frames(raw: Path, n: int = 25) -> tuple[int, list[tuple[float, float, str]]]:
    """Total samples and the ``n`` frames with the largest inclusive share:
    ``(inclusive %, self %, frame)``.  A frame counts once per sample however
    deep it recurses; the frames above an event-loop callback or a thread's
    ``run`` are folded into one group frame (see ``TRUNKS``)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        total += k
        frames = _trim([_frame(f) for f in stack.split(";")])
        for frame in set(frames):
            inclusive[frame] += k
        own[frames[-1]] += k
    if not total:
        return 0, []
    ranked = inclusive.most_common(n)
    return total, [(100 * c / total, 100 * own[f] / total, f) for f, c in ranked]
