"""Which hosts the proxy intercepts, and which provider owns each (data, pure).

Kept free of mitmproxy so the CA and the shell env can use it cheaply.
"""

from __future__ import annotations

from collections.abc import Iterable

# Built-in interception allowlist.  ``*.`` entries match exactly one label or
# more below the suffix (``api.*.githubcopilot.com`` one label in the middle).
BUILTIN_INTERCEPT: tuple[str, ...] = (
    "api.openai.com",
    "api.anthropic.com",
    "api.githubcopilot.com",
    "api.*.githubcopilot.com",
    "api.z.ai",
    "open.bigmodel.cn",
    "api.deepseek.com",
    "openrouter.ai",
)

# host pattern -> (provider id, path prefix that selects it).  Order matters:
# the first match wins, so longer path prefixes come first.
HOST_PROVIDERS: tuple[tuple[str, str, str], ...] = (
    ("api.openai.com", "", "openai"),
    ("api.anthropic.com", "", "anthropic"),
    ("api.githubcopilot.com", "", "github-copilot"),
    ("api.*.githubcopilot.com", "", "github-copilot"),
    ("api.z.ai", "/api/coding/", "zai-coding-plan"),
    ("api.z.ai", "/api/anthropic", "zai-coding-plan"),
    ("api.z.ai", "", "zai"),
    ("open.bigmodel.cn", "/api/coding/", "zhipuai-coding-plan"),
    ("open.bigmodel.cn", "/api/anthropic", "zhipuai-coding-plan"),
    ("open.bigmodel.cn", "", "zhipuai"),
    ("api.deepseek.com", "", "deepseek"),
    ("openrouter.ai", "", "openrouter"),
)


def host_matches(pattern: str, host: str) -> bool:
    """Case-insensitive match where ``*`` stands for exactly one DNS label."""
    host = host.lower().rstrip(".")
    pattern = pattern.lower().rstrip(".")
    p_labels, h_labels = pattern.split("."), host.split(".")
    if len(p_labels) != len(h_labels):
        return False
    return all(h == p or (p == "*" and h != "") for p, h in zip(p_labels, h_labels))


def intercept_patterns(extra: Iterable[str] = (), minus: Iterable[str] = ()) -> list[str]:
    """Built-in allowlist + ``extra`` (``[proxy_mode].intercept_hosts``), minus
    every pattern listed in ``minus`` (``[proxy_mode].passthrough_hosts``)."""
    removed = {m.lower() for m in minus}
    out: list[str] = []
    for pattern in (*BUILTIN_INTERCEPT, *extra):
        pattern = pattern.lower().strip()
        if pattern and pattern not in removed and pattern not in out:
            out.append(pattern)
    return out


def should_intercept(host: str, patterns: Iterable[str], minus: Iterable[str] = ()) -> bool:
    """True when ``host`` matches an intercept pattern and no passthrough one."""
    if any(host_matches(m, host) for m in minus):
        return False
    return any(host_matches(p, host) for p in patterns)


def provider_for(host: str, path: str = "/") -> str | None:
    """The provider id that owns ``host`` (and ``path``), or ``None``."""
    for pattern, prefix, provider in HOST_PROVIDERS:
        if host_matches(pattern, host) and path.startswith(prefix):
            return provider
    return None
