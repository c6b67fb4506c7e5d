"""The layering of tokn's own modules, enforced (beside the ruff test).

Every unit of the tree -- a top-level module, or a package taken whole -- is
listed in ``ALLOWED`` with the units it may import.  Read from the bottom up:
pure foundations import (almost) nothing; the converters nothing above them;
providers and the pool sit on those; the pipeline on them; the front doors
(listener, proxy, dashboard) on the pipeline; the runtime assembles them; the
CLI, on top, may import anything and nothing imports it.  Imports inside
functions and ``TYPE_CHECKING`` blocks count too: a lazy import is still a
dependency.

Also checked: no private name is imported from another module, and no import
of tokn's own code is guarded against the module being missing (that would
hide a rename).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "tokn"

LEAVES = {"tokn", "errors", "paths", "sse", "endings", "hosts", "identity", "hop", "drain",
          "connlimits", "usage_feed", "lan_host", "initiator", "config_keys", "reload",
          "rules", "outbound", "http11", "memory"}
# Settings, state and local files: foundations the whole tree may use.
BASE = LEAVES | {"wire", "config", "config_edit", "state", "logs", "certs", "ca", "shellenv",
                 "lan_env", "usage", "usage_query", "ports", "instance", "reload", "keys",
                 "limits"}
# Accounts, providers and formats: what a request is served with.
MODEL = BASE | {"convert", "auth", "providers", "pool", "accounts", "recorder", "streaming",
                "resolve"}
FLOW = MODEL | {"pipeline"}
FRONT = FLOW | {"server", "mitm", "ui", "live"}
# Replicas' shared backends (Redis, PostgreSQL): stores behind the pool's and
# the token refresher's interfaces, assembled by the runtime.
SHARED = {"shared"}
APP = FRONT | SHARED | {"runtime", "standalone", "data", "daemon", "service", "status_report"}

ALLOWED: dict[str, set[str]] = {
    **{leaf: set() for leaf in LEAVES},
    "outbound": {"http11"},  # the pool of outbound HTTP/1.1 connections
    "wire": {"errors"},  # the wire-format table: pure data
    "config": {"config_keys", "paths", "rules"},
    "config_edit": {"config", "config_keys", "paths"},
    "state": {"paths"},
    "logs": {"config", "paths"},
    "certs": {"errors"},  # building certificates (pure)
    "ca": {"certs", "config", "errors", "hosts", "paths"},
    "shellenv": {"ca", "config"},
    "lan_env": {"ca", "shellenv"},
    "usage": {"paths", "usage_feed"},
    "keys": {"errors", "identity", "paths"},  # team mode: people's keys, stored hashed
    "limits": {"identity", "paths"},  # per-key limits over Counters (local file backend)
    "usage_query": {"paths", "usage"},
    "ports": {"errors"},  # listening sockets, the busy-port error
    "instance": {"tokn", "paths"},  # the running tokn of a TOKN_HOME (pid, lock, status)
    "reload": {"config"},  # what a changed config means for a running tokn (pure)
    "convert": {"errors", "sse", "wire"},  # pure converters: nothing above them
    "auth": BASE,
    "providers": BASE | {"auth", "convert"},
    "resolve": {"convert", "rules"},  # model resolution (pure)
    "pool": BASE | {"convert", "providers", "resolve"},
    "accounts": BASE | {"providers"},
    "recorder": BASE,
    "streaming": BASE,
    "pipeline": MODEL,
    "server": FLOW,  # the listener: not the proxy, the dashboard or the runtime
    "mitm": FLOW,  # the proxy's addons: not the listener (the hop is tokn.hop)
    "ui": FLOW | {"server"},  # the dashboard, behind the listener's gate
    "shared": BASE | {"auth"},  # Redis/PostgreSQL stores for [state] url and [usage] url
    "live": {"ca", "config", "errors", "logs", "reload"},  # a running tokn takes it up
    "runtime": FRONT | SHARED,
    "standalone": FRONT | {"runtime"},  # the mitmdump entry
    "data": {"standalone"},  # shipped files; the mitmdump script loads the entry
    "daemon": {"tokn", "errors", "instance", "paths", "ports"},  # start / stop / reload
    "service": {"tokn", "instance"},  # systemd unit / launchd agent
    "status_report": BASE | SHARED | {"accounts"},  # what `tokn status` says
    "cli": APP,
    "__main__": {"cli"},
}

# Known violations still to be removed (none: issue 22 landed whole). An entry
# no longer violated fails the test, so these cannot go stale.
PENDING: dict[tuple[str, str], set[str]] = {}
PENDING_UNITS: set[str] = set()
PENDING_PRIVATE: set[str] = set()
PENDING_GUARDS: set[str] = set()

def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def unit(module: str) -> str:
    """``tokn.x.y`` -> ``x``; a name that is not a module of tokn -> ``tokn``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "tokn"
    name = parts[1]
    return name if (ROOT / f"{name}.py").exists() or (ROOT / name).is_dir() else "tokn"


def imports(module: str, path: Path) -> Iterator[tuple[str, ast.AST]]:
    """Every tokn module (or ``module.name``) ``module`` imports, with the node."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                yield (f"{source}.{alias.name}" if source == "tokn" else source), node


def own(name: str) -> bool:
    return name == "tokn" or name.startswith("tokn.")


def test_every_unit_has_a_rule():
    units = {unit(m) for m, _ in modules()}
    assert units - ALLOWED.keys() == set(), "place the new module in ALLOWED"
    assert ALLOWED.keys() - units == PENDING_UNITS, "a rule for a unit that is gone"


def test_imports_follow_the_layers():
    found: dict[tuple[str, str], set[str]] = {}
    for module, path in modules():
        for name, _ in imports(module, path):
            if not own(name):
                continue
            src, dst = unit(module), unit(name)
            if src != dst and dst not in ALLOWED[src]:
                found.setdefault((src, dst), set()).add(module)
    unexpected = {k: v for k, v in found.items() if v - PENDING.get(k, set())}
    assert unexpected == {}, "imports against the layering (see ALLOWED)"
    stale = {k: v for k, v in PENDING.items() if not v <= found.get(k, set())}
    assert stale == {}, "PENDING lists violations that are gone: remove them"


def test_nothing_imports_the_cli():
    assert [src for src, allowed in ALLOWED.items() if "cli" in allowed] == ["__main__"]


def test_no_private_names_across_modules():
    crossing = []
    for module, path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or own(node.module or "")):
                source = "." * node.level + (node.module or "")
                crossing += [f"{module}: from {source} import {a.name}"
                             for a in node.names if a.name.startswith("_")
                             and not a.name.startswith("__")]
    assert set(crossing) - PENDING_PRIVATE == set()
    assert PENDING_PRIVATE - set(crossing) == set(), "PENDING_PRIVATE lists imports that are gone"


def _guards(path: Path) -> list[int]:
    """Lines of handlers that catch a missing module."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ExceptHandler) and node.type is not None:
            caught = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
            if any(isinstance(c, ast.Name) and c.id in ("ImportError", "ModuleNotFoundError")
                   for c in caught):
                lines.append(node.lineno)
    return lines


def test_no_guards_against_tokns_own_modules_being_missing():
    guarded = {module for module, path in modules() if _guards(path)}
    assert guarded - PENDING_GUARDS == set()
    assert PENDING_GUARDS - guarded == set(), "PENDING_GUARDS lists guards that are gone"


@pytest.mark.parametrize("src,dst,ok", [
    ("convert", "pipeline", False), ("server", "mitm", False), ("mitm", "server", False),
    ("server", "cli", False), ("pipeline", "server", False), ("mitm", "pipeline", True),
    ("providers", "convert", True), ("cli", "runtime", True),
])
def test_the_rules_say_what_the_design_says(src, dst, ok):
    assert (dst in ALLOWED[src]) is ok
