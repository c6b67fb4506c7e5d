"""The real Gemini CLI (npm ``@google/gemini-cli``) against the Google fakes, headless.

Proof the fakes are faithful to the client that matters most, and the shapes
part 2 of issue 18 relies on: the API-key path (``GOOGLE_GEMINI_BASE_URL``),
the Code Assist path with onboarding (``GOOGLE_GENAI_USE_GCA`` +
``GOOGLE_CLOUD_ACCESS_TOKEN`` + ``CODE_ASSIST_ENDPOINT``: the CLI's own
switches, which skip the browser login), and a tool loop on a Gemini 3 model
(the fake refuses a call sent back without its thought signature).
Skipped when the CLI is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fakes.gemini_brain import GeminiBrain
from tests.fakes.google import FakeCodeAssist, FakeGeminiAPI
from tokn.convert.gemini import gemini_request_to_chat
from tokn.convert.gemini.wire import unwrap_code_assist_request

GEMINI = shutil.which("gemini") or os.path.join(
    os.environ.get("TOKN_NPM_BIN", "/opt/npmcache/node_modules/.bin"), "gemini")
pytestmark = pytest.mark.skipif(not (os.path.exists(GEMINI) and shutil.which("node")),
                                reason="gemini CLI (npm @google/gemini-cli) not installed")
KEY = "AIzaSy-fake-gemini-key"


def run_gemini(tmp_path: Path, auth: str, env: dict[str, str], prompt: str,
               model: str = "gemini-2.5-flash") -> dict:
    home, work = tmp_path / "home", tmp_path / "work"
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    work.mkdir(exist_ok=True)
    (home / ".gemini" / "settings.json").write_text(json.dumps(
        {"security": {"auth": {"selectedType": auth}}}))
    base = {k: v for k, v in os.environ.items()
            if not k.upper().startswith(("GEMINI", "GOOGLE", "HTTP_PROXY", "HTTPS_PROXY",
                                         "NO_PROXY", "CODE_ASSIST"))}
    base.update(HOME=str(home), GEMINI_CLI_TRUST_WORKSPACE="true", NO_COLOR="1", TERM="dumb",
                **env)
    proc = subprocess.run([GEMINI, "-p", prompt, "-m", model, "--output-format", "json"],
                          cwd=work, env=base, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_api_key_path(tmp_path):
    with FakeGeminiAPI() as fake:
        out = run_gemini(tmp_path, "gemini-api-key",
                         {"GEMINI_API_KEY": KEY, "GOOGLE_GEMINI_BASE_URL": fake.url},
                         "hello there")
        assert out["response"].startswith("echo: ") and out["response"].endswith("hello there")
        # one call when the machine is idle; under load the CLI has been seen to send more
        seen = [(r.method, r.target) for r in fake.requests]
        assert all(r.headers.get("x-goog-api-key") == KEY for r in fake.requests), seen
        req = fake.requests[0]
        assert req.target == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", seen
        assert req.headers["user-agent"].startswith("GeminiCLI")
        assert req.headers["x-goog-api-client"].startswith("google-genai-sdk/")
        gc = req.json["generationConfig"]
        assert gc["topK"] == 64 and gc["thinkingConfig"]["includeThoughts"] is True
        chat = gemini_request_to_chat({**req.json, "model": "gemini-2.5-flash", "stream": True})
        assert chat["messages"][0]["role"] == "system" and chat["tools"]
        assert "top_k" not in chat and chat["reasoning_effort"] == "medium"  # budget 8192
        assert not fake.handler_errors


def test_code_assist_path_onboards_a_new_account(tmp_path):
    with FakeCodeAssist(access_tokens={"ya29.fake-cli"}, onboarded=False,
                        onboard_polls=0) as fake:
        out = run_gemini(tmp_path, "oauth-personal",
                         {"GOOGLE_GENAI_USE_GCA": "true",
                          "GOOGLE_CLOUD_ACCESS_TOKEN": "ya29.fake-cli",
                          "CODE_ASSIST_ENDPOINT": fake.url}, "hello there")
        assert out["response"].endswith("hello there")
        methods = [r.meta.get("method") for r in fake.requests]
        assert methods[:2] == ["loadCodeAssist", "onboardUser"]
        assert methods[-1] == "streamGenerateContent"
        onboard = fake.requests[1].json
        assert onboard["tierId"] == "free-tier" and onboard["metadata"]["pluginType"] == "GEMINI"
        gen = fake.requests[-1]
        assert gen.raw_query == "alt=sse" and gen.headers["authorization"] == "Bearer ya29.fake-cli"
        assert "google-api-nodejs-client/" in gen.headers["user-agent"]
        assert gen.json["project"] == fake.project and gen.json["user_prompt_id"]
        body = unwrap_code_assist_request(gen.json)
        assert gemini_request_to_chat(body)["model"] == "gemini-2.5-flash"
        assert not fake.handler_errors


def test_tool_loop_on_gemini_3_sends_the_signature_back(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "marker-file.txt").write_text("x")
    brain = GeminiBrain(tool_name="list_directory", tool_arguments={"dir_path": str(work)})
    with FakeGeminiAPI(brain=brain) as fake:
        out = run_gemini(tmp_path, "gemini-api-key",
                         {"GEMINI_API_KEY": KEY, "GOOGLE_GEMINI_BASE_URL": fake.url},
                         "what is the weather in Paris?", model="gemini-3.1-pro-preview")
        assert out["response"].startswith("tool said: ") and "marker-file.txt" in out["response"]
        first, second = fake.requests
        model_turn = second.json["contents"][-2]
        call = next(p for p in model_turn["parts"] if "functionCall" in p)
        assert call["functionCall"]["name"] == "list_directory"
        assert brain.issued(call["thoughtSignature"])
        assert not fake.handler_errors
