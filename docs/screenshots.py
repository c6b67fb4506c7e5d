"""Take the README's dashboard screenshots (docs/screenshots/*.png).

    .venv/bin/python docs/screenshots.py

Runs tokn on loopback fakes (tests/fakes: Copilot with plan and quota, a Z.ai
coding plan with its quota windows, an Anthropic key, an OpenAI-compatible
key), fills the usage store with two weeks of made-up but realistic traffic,
sends a few real requests, then screenshots each page in the system's
chromium (light, plus the usage page dark).  Needs chromium and playwright
(the test extra); touches nothing outside a temporary TOKN_HOME.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
sys.path.insert(0, str(ROOT))
os.environ["TOKN_HOME"] = tempfile.mkdtemp(prefix="tokn-shots-")

import httpx  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from tests.fakes.github import FakeGitHub  # noqa: E402
from tests.fakes.llm import FakeLLM  # noqa: E402
from tests.helpers import account, running_tokn, write_config  # noqa: E402
from tests.ui.conftest import CHROMIUM_ARGS, chromium_path  # noqa: E402
from tokn.providers.zai import QUOTA_PATH  # noqa: E402
from tokn.usage import UsageStore  # noqa: E402

ZAI_QUOTA = {"code": 200, "msg": "Operation successful", "success": True, "data": {
    "level": "pro", "limits": [
        {"type": "TOKENS_LIMIT", "unit": 3, "number": 5, "percentage": 34,
         "nextResetTime": int((time.time() + 3 * 3600) * 1000)},
        {"type": "TIME_LIMIT", "unit": 5, "number": 1, "usage": 1000, "currentValue": 212,
         "remaining": 788, "percentage": 21,
         "nextResetTime": int((time.time() + 19 * 86400) * 1000)}]}}
# (account, provider, model, share of traffic, median latency ms)
TRAFFIC = [("copilot", "github-copilot", "claude-sonnet-4.5", 0.34, 2400),
           ("copilot", "github-copilot", "gpt-4.1", 0.18, 900),
           ("zai", "zai-coding-plan", "glm-4.6", 0.26, 1800),
           ("anthropic", "anthropic", "claude-haiku-4-5", 0.12, 700),
           ("openai", "openai-compatible", "gpt-4o-mini", 0.10, 500)]


def seed(store: UsageStore, days: int = 14) -> None:
    """Two weeks of rows: weekday peaks, agents' follow-ups, a few 429s and 502s."""
    rng = random.Random(16)
    now = time.time()
    weights = [t[3] for t in TRAFFIC]
    for day in range(days, -1, -1):
        weekday = time.localtime(now - day * 86400).tm_wday
        count = int(rng.gauss(140 if weekday < 5 else 35, 20))
        for _ in range(max(count, 5)):
            acc, provider, model, _, median = rng.choices(TRAFFIC, weights)[0]
            ts = now - day * 86400 - rng.uniform(0, 86400 if day else 6 * 3600)
            status = rng.choices([200, 429, 502], [0.96, 0.03, 0.01])[0]
            latency = rng.lognormvariate(0, 0.5) * median
            agent = rng.random() < 0.7
            store.record({
                "ts": ts, "request_id": f"{rng.getrandbits(64):016x}",
                "front_door": rng.choice(["proxy", "proxy", "listener"]), "route_mode": "route",
                "client": "127.0.0.1:51234", "inbound_format": "messages",
                "upstream_format": "chat", "provider": provider, "account": acc,
                "model_requested": model, "model_served": model,
                "initiator": "agent" if agent else "user", "stream": 1, "status": status,
                "error": None if status == 200 else
                ("HTTP 429: rate limited" if status == 429 else "upstream stream broke"),
                "input_tokens": int(rng.uniform(800, 18000)),
                "output_tokens": int(rng.uniform(40, 1800)) if status == 200 else 0,
                "cache_read_tokens": int(rng.uniform(0, 40000)) if "claude" in model else 0,
                "ttfb_ms": latency * 0.3, "latency_ms": latency})
    store.close()


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with FakeGitHub(token_ttl=1800) as gh, \
            FakeLLM(copilot_style=True, models=["gpt-4.1", "claude-sonnet-4.5"],
                    token_validator=gh.is_valid_copilot_token) as copilot, \
            FakeLLM(formats={"chat"}, path_prefix="/api/coding/paas/v4",
                    models=["glm-4.6"]) as zai, \
            FakeLLM(formats={"messages"}, path_prefix="/v1",
                    models=["claude-haiku-4-5"]) as anthropic, \
            FakeLLM(formats={"chat"}, path_prefix="/v1", models=["gpt-4o-mini"]) as openai:
        gh.copilot_api_url = copilot.url
        gh.set_quota("premium_interactions", entitlement=300, remaining=187,
                     percent_remaining=62.3)
        zai.fail_next(200, count=1000, body=ZAI_QUOTA, endpoint=QUOTA_PATH)
        write_config({"usage": {"record_bodies": True}, "accounts": [
            account("copilot", "github-copilot", github_token="gho_screenshots0001",
                    settings={"github_api_url": gh.url, "github_base_url": gh.url}),
            account("zai", "zai-coding-plan", base_url=zai.url + "/api/coding/paas/v4",
                    api_key="zai-screenshots-0001"),
            account("anthropic", "anthropic", base_url=anthropic.url, api_key="sk-ant-0001xyz"),
            account("openai", "openai-compatible", base_url=openai.url + "/v1",
                    api_key="sk-openai-0001xyz"),
        ]})
        seed(UsageStore())
        with running_tokn(with_proxy=True) as tokn:
            for model, text in (("claude-sonnet-4.5", "Refactor the retry loop in pool.py"),
                                ("glm-4.6", "Explain this stack trace"),
                                ("gpt-4o-mini", "Summarise the diff"),
                                ("claude-sonnet-4.6", "typo in the model name")):
                httpx.post(tokn.api_url + "/v1/chat/completions", timeout=30, json={
                    "model": model, "messages": [{"role": "user", "content": text}]})
            tokn.runtime.pool.mark_failure("openai", "HTTP 429: Rate limit reached for "
                                           "gpt-4o-mini", retry_after=240)
            shoot(tokn.api_url)
    print(f"wrote {', '.join(sorted(p.name for p in OUT.glob('*.png')))} to {OUT}")


def shoot(base: str) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True,
                                     args=CHROMIUM_ARGS)
        for scheme in ("light", "dark"):
            page = browser.new_page(viewport={"width": 1280, "height": 860},
                                    color_scheme=scheme)
            shots = {"overview": "/ui/", "usage": "/ui/usage?since=14d",
                     "requests": "/ui/requests", "accounts": "/ui/accounts",
                     "config": "/ui/config"} if scheme == "light" else \
                {"usage-dark": "/ui/usage?since=14d&metric=tokens"}
            for name, path in shots.items():
                page.goto(base + path)
                if name == "overview":  # the quotas arrive in the background
                    page.wait_for_selector("text=187 of 300 left")
                    page.wait_for_selector("text=34% used")
                    page.reload()
                page.screenshot(path=str(OUT / f"{name}.png"))
            if scheme == "light":
                page.goto(base + "/ui/requests?status=ok&model=claude-sonnet-4.5")
                page.locator("#tail tbody tr a").first.click()
                page.wait_for_selector("text=Attempt 1")
                page.screenshot(path=str(OUT / "request.png"))
            page.close()
        browser.close()


if __name__ == "__main__":
    main()
