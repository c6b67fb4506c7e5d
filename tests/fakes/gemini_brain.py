"""What the Google fakes answer to a ``GenerateContentRequest``: validation as
Google does it, deterministic replies, whole responses and stream chunks.

Shared by :class:`tests.fakes.google.FakeGeminiAPI` (public API) and
:class:`tests.fakes.google.FakeCodeAssist` (the Gemini CLI's backend). It does
not import tokn: the fakes are the oracle the converters are checked against.

Replies (same rules as :class:`tests.fakes.llm.FakeLLM`):

* ``"echo: <text of the last user turn>"``; with ``responseMimeType:
  application/json`` the text is ``{"echo": "<that text>"}``;
* with function declarations and ``tool_trigger`` ("weather") in the last user
  text: one ``functionCall`` of ``tool_name`` when declared (else the first
  declared function) with ``tool_arguments``;
* after function responses: ``"tool said: <output>"`` (``response.output``,
  else the response as JSON);
* ``thinkingConfig.includeThoughts``: a thought part ``"thinking about:
  <text>"`` first.

Thought signatures (opaque base64, recorded in ``signatures``) go on the
function-call part, or on the last text part (whole responses) / an empty last
text part (streams), as Gemini 2.5+/3 send them. Usage: prompt = characters of
all text // 4 + 1, candidates = len(reply or arguments) // 4 + 1, thoughts
likewise, ``cachedContentTokenCount`` = min(``cached_tokens``, prompt).

Validation mirrors errors Google returns (messages from the API and users'
reports): unknown field names, empty ``contents`` / ``parts``, empty text,
bad roles, bad base64, bad function names, both ``parameters`` and
``parametersJsonSchema``, both thinking level and budget, function-response
count mismatches, and, for ``gemini-3*`` models, a function call of the
current turn without (or with a foreign) ``thoughtSignature``.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = ["REQUEST_FIELDS", "RPC", "BadRequest", "GeminiBrain", "Plan", "google_error"]

REQUEST_FIELDS = {"contents", "tools", "toolConfig", "safetySettings", "systemInstruction",
                  "generationConfig", "cachedContent", "model", "labels", "serviceTier"}
GENERATION_FIELDS = {
    "temperature", "topP", "topK", "candidateCount", "maxOutputTokens", "stopSequences",
    "responseLogprobs", "logprobs", "presencePenalty", "frequencyPenalty", "seed",
    "responseMimeType", "responseSchema", "responseJsonSchema", "responseModalities",
    "mediaResolution", "speechConfig", "thinkingConfig", "imageConfig",
    "enableEnhancedCivicAnswers",
}
PART_FIELDS = {"text", "inlineData", "fileData", "functionCall", "functionResponse",
               "executableCode", "codeExecutionResult", "thought", "thoughtSignature",
               "videoMetadata", "partMetadata", "mediaResolution"}
_DATA_FIELDS = PART_FIELDS - {"thought", "thoughtSignature", "videoMetadata", "partMetadata",
                              "mediaResolution"}
_FN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:\-]{0,63}$")
RPC = "type.googleapis.com/google.rpc."
STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
          404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


def snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _get(obj: Any, name: str) -> Any:
    if not isinstance(obj, dict):
        return None
    value = obj.get(name)
    return obj.get(snake(name)) if value is None else value


def proto_bytes(text: str) -> bytes:
    """A proto ``bytes`` field from JSON: standard or URL-safe base64, padding optional
    (google-genai sends URL-safe; Google's parser takes both)."""
    text = text.strip().replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def google_error(status: int, message: str, details: list[dict[str, Any]] | None = None,
                 ) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message,
                             "status": STATUS.get(status, "UNKNOWN")}
    if details:
        error["details"] = details
    return {"error": error}


class BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _unknown(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    names = allowed | {snake(a) for a in allowed}
    for key in obj:
        if key not in names:
            raise BadRequest(f'Invalid JSON payload received. Unknown name "{key}" at '
                             f"'{where}': Cannot find field.")


@dataclass
class Plan:
    kind: str  # "text" | "tool"
    text: str = ""
    tool_name: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    thought: str = ""
    prompt_tokens: int = 0
    output_tokens: int = 0
    thought_tokens: int = 0
    cached_tokens: int = 0


class GeminiBrain:
    def __init__(self, *, tool_trigger: str = "weather", tool_name: str | None = None,
                 tool_arguments: dict[str, Any] | None = None, cached_tokens: int = 0,
                 call_ids: bool = False, signatures: bool = True) -> None:
        self.tool_trigger = tool_trigger
        self.tool_name = tool_name
        self.tool_arguments = tool_arguments or {"location": "Paris", "unit": "celsius"}
        self.cached_tokens = cached_tokens
        self.call_ids = call_ids
        self.with_signatures = signatures
        self.signatures: set[str] = set()  # as sent
        self._signature_bytes: set[bytes] = set()
        self._count = itertools.count(1)
        self._lock = threading.Lock()

    def new_signature(self) -> str:
        with self._lock:
            n = next(self._count)
        sig = base64.b64encode(b"tokn-fake-thought-signature:" + str(n).encode()
                               + secrets.token_bytes(6)).decode()
        self.signatures.add(sig)
        self._signature_bytes.add(proto_bytes(sig))
        return sig

    def issued(self, sig: str) -> bool:
        """Whether ``sig`` (in either base64 alphabet) is a signature this fake issued."""
        try:
            return proto_bytes(sig) in self._signature_bytes
        except (binascii.Error, ValueError):
            return False

    # -- validation ----------------------------------------------------------
    def validate(self, body: Any, model: str, *, allowed: set[str] = REQUEST_FIELDS) -> None:
        """Raise :class:`BadRequest` with Google's message for what Google rejects."""
        if not isinstance(body, dict):
            raise BadRequest("Invalid JSON payload received. Expected an object.")
        _unknown(body, allowed, "")
        contents = _get(body, "contents")
        if not contents:
            raise BadRequest("* GenerateContentRequest.contents: contents is not specified\n")
        calls_pending: int | None = None
        last_user = -1
        for i, content in enumerate(contents):
            role = content.get("role") or "user"
            if role not in ("user", "model"):
                raise BadRequest("Please use a valid role: user, model.")
            parts = _get(content, "parts") or []
            if not parts:
                raise BadRequest(f"* GenerateContentRequest.contents[{i}].parts: contents.parts "
                                 "must not be empty.\n")
            responses = 0
            for j, part in enumerate(parts):
                self._part(part, f"contents[{i}].parts[{j}]")
                responses += _get(part, "functionResponse") is not None
            if role == "model":
                calls_pending = sum(_get(p, "functionCall") is not None for p in parts) or None
            else:
                if calls_pending is not None and responses and responses != calls_pending:
                    raise BadRequest("Please ensure that the number of function response parts is"
                                     " equal to the number of function call parts of the function"
                                     " call turn.")
                if any(_get(p, "text") for p in parts):
                    last_user = i
                calls_pending = None
        for t, tool in enumerate(_get(body, "tools") or []):
            for d, decl in enumerate(_get(tool, "functionDeclarations") or []):
                where = f"tools[{t}].function_declarations[{d}]"
                if not _FN_NAME.match(str(decl.get("name") or "")):
                    raise BadRequest(f"* GenerateContentRequest.{where}.name: Invalid function "
                                     "name. Must start with a letter or an underscore. Must be "
                                     "a-z, A-Z, 0-9, or contain underscores, dots, colons and "
                                     "dashes, with a maximum length of 64.\n")
                if _get(decl, "parameters") is not None and \
                        _get(decl, "parametersJsonSchema") is not None:
                    raise BadRequest(f"* GenerateContentRequest.{where}: parameters and "
                                     "parameters_json_schema cannot both be set.\n")
        gc = _get(body, "generationConfig") or {}
        _unknown(gc, GENERATION_FIELDS, "generation_config")
        thinking = _get(gc, "thinkingConfig") or {}
        if _get(thinking, "thinkingLevel") is not None and \
                _get(thinking, "thinkingBudget") is not None:
            raise BadRequest("You can only set only one of thinking budget and thinking level.")
        if model.startswith("gemini-3"):
            self._check_signatures(contents, last_user)

    def _part(self, part: Any, where: str) -> None:
        if not isinstance(part, dict):
            raise BadRequest(f"Invalid value at '{where}': expected an object.")
        _unknown(part, PART_FIELDS, where)
        if not any(_get(part, k) is not None for k in _DATA_FIELDS):
            raise BadRequest(f"* GenerateContentRequest.{where}.data: required oneof field "
                             "'data' must have one initialized field\n")
        if _get(part, "text") == "":
            raise BadRequest("Unable to submit request because it has an empty text parameter. "
                             "Add a value to the parameter and try again.")
        blob = _get(part, "inlineData")
        if blob is not None:
            try:
                proto_bytes(str(_get(blob, "data") or ""))
            except (binascii.Error, ValueError):
                raise BadRequest(f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), "
                                 "Base64 decoding failed") from None

    def _check_signatures(self, contents: list[dict[str, Any]], last_user: int) -> None:
        for i, content in enumerate(contents[last_user + 1:], start=last_user + 1):
            if content.get("role") != "model":
                continue
            first = True
            for j, part in enumerate(_get(content, "parts") or []):
                fc = _get(part, "functionCall")
                if fc is None:
                    continue
                sig = _get(part, "thoughtSignature")
                if first and not sig:
                    raise BadRequest(
                        "Function call is missing a thought_signature in functionCall parts. This"
                        " is required for tools to work correctly, and missing thought_signature"
                        " may lead to degraded model performance. Additional data, function call"
                        f" `default_api:{fc.get('name')}` , position {j + 1}. Please refer to"
                        " https://ai.google.dev/gemini-api/docs/thought-signatures for more"
                        " details.")
                if sig and not self.issued(sig):
                    raise BadRequest(f"Corrupted thought signature (contents[{i}].parts[{j}]).")
                first = False

    # -- answers --------------------------------------------------------------
    @staticmethod
    def _text(obj: Any) -> str:
        if isinstance(obj, str):
            return obj
        if isinstance(obj, dict):
            return "".join(GeminiBrain._text(v) for k, v in obj.items()
                           if k in ("text", "parts", "functionResponse", "response", "output"))
        if isinstance(obj, list):
            return "".join(GeminiBrain._text(v) for v in obj)
        return ""

    def plan(self, body: dict[str, Any]) -> Plan:
        contents = _get(body, "contents") or []
        last = contents[-1] if contents else {}
        parts = _get(last, "parts") or []
        responses = [_get(p, "functionResponse") for p in parts
                     if _get(p, "functionResponse") is not None]
        last_text = "".join(_get(p, "text") or "" for p in parts
                            if isinstance(_get(p, "text"), str) and not _get(p, "thought"))
        prompt = self._text(_get(body, "systemInstruction")) + self._text(contents)
        decls = [d for t in _get(body, "tools") or []
                 for d in _get(t, "functionDeclarations") or []]
        gc = _get(body, "generationConfig") or {}
        plan = Plan(kind="text", prompt_tokens=len(prompt) // 4 + 1)
        plan.cached_tokens = min(self.cached_tokens, plan.prompt_tokens)
        if responses:
            resp = responses[0].get("response")
            said = resp.get("output") if isinstance(resp, dict) and "output" in resp else resp
            plan.text = f"tool said: {said if isinstance(said, str) else json.dumps(said)}"
        elif decls and self.tool_trigger and self.tool_trigger in last_text.lower():
            names = [str(d.get("name")) for d in decls]
            plan.kind = "tool"
            plan.tool_name = self.tool_name if self.tool_name in names else names[0]
            plan.arguments = dict(self.tool_arguments)
        else:
            plan.text = f"echo: {last_text}"
            if _get(gc, "responseMimeType") == "application/json":
                plan.text = json.dumps({"echo": last_text})
        if _get(_get(gc, "thinkingConfig") or {}, "includeThoughts"):
            plan.thought = f"thinking about: {last_text}"
            plan.thought_tokens = len(plan.thought) // 4 + 1
        produced = plan.text if plan.kind == "text" else json.dumps(plan.arguments)
        plan.output_tokens = len(produced) // 4 + 1
        return plan

    def usage(self, plan: Plan, *, output: int | None = None,
              thoughts: int | None = None) -> dict[str, Any]:
        out = plan.output_tokens if output is None else output
        th = plan.thought_tokens if thoughts is None else thoughts
        usage: dict[str, Any] = {"promptTokenCount": plan.prompt_tokens,
                                 "candidatesTokenCount": out,
                                 "totalTokenCount": plan.prompt_tokens + out + th,
                                 "promptTokensDetails": [{"modality": "TEXT",
                                                          "tokenCount": plan.prompt_tokens}]}
        if th:
            usage["thoughtsTokenCount"] = th
        if plan.cached_tokens:
            usage["cachedContentTokenCount"] = plan.cached_tokens
        return usage

    def _call_part(self, plan: Plan) -> dict[str, Any]:
        call: dict[str, Any] = {"name": plan.tool_name, "args": plan.arguments}
        if self.call_ids:
            call["id"] = secrets.token_hex(4)
        part: dict[str, Any] = {"functionCall": call}
        if self.with_signatures:
            part["thoughtSignature"] = self.new_signature()
        return part

    def response(self, plan: Plan, model: str, response_id: str) -> dict[str, Any]:
        parts: list[dict[str, Any]] = []
        if plan.thought:
            parts.append({"text": plan.thought, "thought": True})
        if plan.kind == "tool":
            parts.append(self._call_part(plan))
        else:
            text: dict[str, Any] = {"text": plan.text}
            if self.with_signatures:
                text["thoughtSignature"] = self.new_signature()
            parts.append(text)
        return {"candidates": [{"content": {"parts": parts, "role": "model"},
                                "finishReason": "STOP", "index": 0}],
                "usageMetadata": self.usage(plan), "modelVersion": model,
                "responseId": response_id}

    def chunks(self, plan: Plan, model: str, response_id: str) -> list[dict[str, Any]]:
        """The stream: thought, word pieces (running usage), then the finishing chunk."""

        def chunk(parts: list[dict[str, Any]], usage: dict[str, Any],
                  finish: str | None = None) -> dict[str, Any]:
            cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
            if finish:
                cand["finishReason"] = finish
            return {"candidates": [cand], "usageMetadata": usage, "modelVersion": model,
                    "responseId": response_id}

        out = []
        if plan.thought:
            out.append(chunk([{"text": plan.thought, "thought": True}],
                             self.usage(plan, output=0)))
        if plan.kind == "tool":
            out.append(chunk([self._call_part(plan)], self.usage(plan), "STOP"))
            return out
        words = re.findall(r"\s*\S+", plan.text) or [plan.text]
        sent = ""
        for word in words:
            sent += word
            out.append(chunk([{"text": word}], self.usage(plan, output=len(sent) // 4 + 1)))
        last: dict[str, Any] = {"text": ""}
        if self.with_signatures:
            last["thoughtSignature"] = self.new_signature()
        out.append(chunk([last], self.usage(plan), "STOP"))
        return out
