"""Gemini property tests: round trips through the chat hub, stream == non-stream.

Round trips are exact for the canonical forms the converters document: one
text part per user turn, function responses before the user's text, a model
turn as [thought] [text] [calls], a non-call signature on the thought part
(else the text part), function-response ids equal to their call's id.
"""

import json

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.convert.test_properties import args, name, text
from tokn.convert.common import Usage
from tokn.convert.gemini import (
    ChatToGeminiStream,
    GeminiToChatStream,
    chat_request_to_gemini,
    chat_response_to_gemini,
    gemini_request_to_chat,
    gemini_response_to_chat,
    usage_from_gemini,
    usage_to_gemini,
)
from tokn.convert.gemini.base import decode_call_id, is_json_object

call_id = st.from_regex(r"[a-zA-Z0-9]{1,10}", fullmatch=True)
signature = st.from_regex(r"[A-Za-z0-9+/]{4,40}={0,2}", fullmatch=True)
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def maybe(draw, strategy):
    return draw(strategy) if draw(st.booleans()) else None


@st.composite
def model_turns(draw):
    parts = []
    ids = iter(draw(st.lists(call_id, min_size=3, max_size=3, unique=True)))
    thought = maybe(draw, text)
    words = maybe(draw, text)
    sig = maybe(draw, signature) if (thought or words) else None
    if thought:
        parts.append({"text": thought, "thought": True, **({"thoughtSignature": sig} if sig
                                                            else {})})
    if words:
        parts.append({"text": words, **({"thoughtSignature": sig} if sig and not thought
                                        else {})})
    calls = []
    for _ in range(draw(st.integers(0 if parts else 1, 3))):
        fc = {"name": draw(name), "args": draw(args)}
        cid = next(ids) if draw(st.booleans()) else None
        if cid:
            fc = {"id": cid, **fc}
        part = {"functionCall": fc}
        csig = maybe(draw, signature)
        if csig:
            part["thoughtSignature"] = csig
        calls.append(part)
    return parts + calls


def _response_for(call):
    fc = call["functionCall"]
    return fc.get("id"), fc["name"]


@st.composite
def gemini_requests(draw):
    contents = [{"role": "user", "parts": [{"text": draw(text)}]}]
    for _ in range(draw(st.integers(0, 3))):
        parts = draw(model_turns())
        contents.append({"role": "model", "parts": parts})
        user = []
        for call in [p for p in parts if "functionCall" in p]:
            cid, fname = _response_for(call)
            response = draw(st.one_of(st.builds(lambda t: {"output": t}, text), args))
            fr = {"name": fname, "response": response}
            user.append({"functionResponse": {"id": cid, **fr} if cid else fr})
        if not user or draw(st.booleans()):
            user.append({"text": draw(text)})
        if draw(st.booleans()):
            user.append({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}})
        contents.append({"role": "user", "parts": user})
    body = {"model": "gemini-2.5-flash", "contents": contents}
    if draw(st.booleans()):
        body["systemInstruction"] = {"parts": [{"text": t}
                                               for t in draw(st.lists(text, min_size=1,
                                                                      max_size=2))]}
    decls = draw(st.lists(st.fixed_dictionaries({
        "name": name, "description": text,
        "parametersJsonSchema": st.just({"type": "object", "properties": {}})}), max_size=3))
    if decls:
        body["tools"] = [{"functionDeclarations": decls}]
    gc = draw(st.fixed_dictionaries({}, optional={
        "temperature": st.sampled_from([0.0, 0.5, 1.0, 2.0]),
        "topP": st.sampled_from([0.1, 0.95]),
        "maxOutputTokens": st.integers(1, 65536),
        "stopSequences": st.lists(text, min_size=1, max_size=3),
        "candidateCount": st.integers(1, 4),
        "seed": st.integers(0, 2**31)}))
    if gc:
        body["generationConfig"] = gc
    return body


@SETTINGS
@given(gemini_requests())
def test_gemini_chat_gemini_request_roundtrip(body):
    back = chat_request_to_gemini(gemini_request_to_chat(body))
    assert back == body


@st.composite
def chat_requests(draw):
    messages = [{"role": "system", "content": t} for t in draw(st.lists(text, max_size=2))]
    messages.append({"role": "user", "content": draw(text)})
    for _ in range(draw(st.integers(0, 3))):
        msg = {"role": "assistant", "content": maybe(draw, text)}
        reasoning = maybe(draw, text)
        if reasoning:
            msg["reasoning_content"] = reasoning
        if (reasoning or msg["content"]) and draw(st.booleans()):
            msg["reasoning_signature"] = draw(signature)
        ids = draw(st.lists(st.from_regex(r"(call|toolu)_[a-zA-Z0-9]{1,12}", fullmatch=True),
                            max_size=3, unique=True))
        if not ids and not msg["content"] and not reasoning:
            msg["content"] = draw(text)
        if ids:
            msg["tool_calls"] = [{"id": i, "type": "function", "function": {
                "name": draw(name), "arguments": json.dumps(draw(args), separators=(",", ":"),
                                                            ensure_ascii=False)}} for i in ids]
        messages.append(msg)
        for i in ids:
            result = draw(text)
            assume(not is_json_object(result)
                   or result == json.dumps(json.loads(result), separators=(",", ":")))
            messages.append({"role": "tool", "tool_call_id": i, "content": result})
        if not ids or draw(st.booleans()):
            messages.append({"role": "user", "content": draw(text)})
    body = {"model": draw(st.sampled_from(["gemini-2.5-flash", "gemini-3-pro-preview"])),
            "messages": messages}
    tools = draw(st.lists(st.fixed_dictionaries({"type": st.just("function"), "function":
                          st.fixed_dictionaries({"name": name, "description": text,
                                                 "parameters": st.just({"type": "object"})})}),
                          max_size=3))
    if tools:
        body["tools"] = tools
        choice = draw(st.sampled_from([None, "auto", "none", "required", "named"]))
        if choice == "named":
            choice = {"type": "function", "function": {"name": tools[0]["function"]["name"]}}
        if choice is not None:
            body["tool_choice"] = choice
    extra = draw(st.fixed_dictionaries({}, optional={
        "temperature": st.sampled_from([0.0, 0.7]), "top_p": st.sampled_from([0.5, 1.0]),
        "max_tokens": st.integers(1, 9999), "stop": st.lists(text, min_size=1, max_size=2),
        "n": st.integers(1, 3), "seed": st.integers(0, 99),
        "reasoning_effort": st.sampled_from(["minimal", "low", "medium", "high"])}))
    return {**body, **extra}


@SETTINGS
@given(chat_requests())
def test_chat_gemini_chat_request_roundtrip(body):
    back = gemini_request_to_chat(chat_request_to_gemini(body))
    assert back == body


# --- responses and streams ---------------------------------------------------------


@st.composite
def gemini_responses(draw):
    parts = draw(model_turns())
    calls = any("functionCall" in p for p in parts)
    finish = "STOP" if calls else draw(st.sampled_from(["STOP", "MAX_TOKENS", "SAFETY"]))
    usage = {"promptTokenCount": draw(st.integers(0, 10**6)),
             "candidatesTokenCount": draw(st.integers(0, 10**5)),
             "thoughtsTokenCount": draw(st.integers(1, 10**5))}
    cached = draw(st.integers(0, usage["promptTokenCount"]))
    if cached:
        usage["cachedContentTokenCount"] = cached
    usage["totalTokenCount"] = (usage["promptTokenCount"] + usage["candidatesTokenCount"]
                                + usage["thoughtsTokenCount"])
    return {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish,
                            "index": 0}],
            "usageMetadata": usage, "modelVersion": "gemini-2.5-pro",
            "responseId": draw(call_id)}


def _canonical_usage(usage):
    return usage_to_gemini(usage_from_gemini(usage))


@SETTINGS
@given(gemini_responses())
def test_gemini_chat_gemini_response_roundtrip(body):
    back = chat_response_to_gemini(gemini_response_to_chat(body))
    assert back == body


def _pieces(cuts, s):
    bounds = [0, *sorted({c % (len(s) + 1) for c in cuts}), len(s)]
    return [s[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def _as_gemini_stream(body, cuts):
    """The stream Google would send for ``body``: text in pieces, the signature on an
    empty last part of its run, calls whole, usage on every chunk, finish last."""
    cand = body["candidates"][0]

    def chunk(parts, finish=None):
        c = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish:
            c["finishReason"] = finish
        return {"candidates": [c], "usageMetadata": body["usageMetadata"],
                "modelVersion": body["modelVersion"], "responseId": body["responseId"]}

    events = []
    for part in cand["content"]["parts"]:
        if "functionCall" in part:
            events.append(chunk([part]))
            continue
        flag = {"thought": True} if part.get("thought") else {}
        events += [chunk([{"text": p, **flag}]) for p in _pieces(cuts, part["text"])]
        if part.get("thoughtSignature"):
            events.append(chunk([{"text": "", **flag,
                                  "thoughtSignature": part["thoughtSignature"]}]))
    events.append(chunk([{"text": ""}], cand["finishReason"]))
    return events


def _accumulate_chat(frames):
    msg = {"role": "assistant", "content": None}
    calls, finish, usage = {}, None, None
    for _, data in frames:
        if data == "[DONE]":
            continue
        usage = data.get("usage") or usage
        for choice in data["choices"]:
            d = choice["delta"]
            for key in ("content", "reasoning_content"):
                if d.get(key):
                    msg[key] = (msg.get(key) or "") + d[key]
            if d.get("reasoning_signature"):
                msg["reasoning_signature"] = d["reasoning_signature"]
            for tc in d.get("tool_calls") or []:
                calls[tc["index"]] = tc
            finish = choice.get("finish_reason") or finish
    if calls:
        msg["tool_calls"] = [{k: v for k, v in calls[i].items() if k != "index"}
                             for i in sorted(calls)]
    return msg, finish, usage


def _without_synthetic_ids(msg):
    out = dict(msg)
    if out.get("tool_calls"):
        out["tool_calls"] = [{**c, "id": decode_call_id(c["id"])} for c in out["tool_calls"]]
    return out


def _run(stage_class, events):
    stage = stage_class(ids=lambda p: p + "x", clock=lambda: 1)
    frames = []
    for event in events:
        frames += stage.feed(None, event)
    return frames + stage.close()


@SETTINGS
@given(gemini_responses(), st.lists(st.integers(0, 200), max_size=4))
def test_gemini_stream_to_chat_equals_nonstream(body, cuts):
    msg, finish, usage = _accumulate_chat(_run(GeminiToChatStream,
                                               _as_gemini_stream(body, cuts)))
    whole = gemini_response_to_chat(body)
    choice = whole["choices"][0]
    expected = dict(choice["message"])
    if expected["content"] == "":
        expected["content"] = None
    assert _without_synthetic_ids(msg) == _without_synthetic_ids(expected)
    assert finish == choice["finish_reason"] and usage == whole["usage"]


def _accumulate_gemini(frames):
    parts, finish, usage = [], None, None
    for _, data in frames:
        cand = data["candidates"][0]
        finish = cand.get("finishReason") or finish
        usage = data.get("usageMetadata") or usage
        for part in cand["content"]["parts"]:
            last = parts[-1] if parts else None
            same = (last is not None and "text" in part and "text" in last
                    and bool(part.get("thought")) == bool(last.get("thought"))
                    and "thoughtSignature" not in last)
            if same:
                last["text"] += part["text"]
                if part.get("thoughtSignature"):
                    last["thoughtSignature"] = part["thoughtSignature"]
            elif part != {"text": ""}:
                parts.append(dict(part))
    return parts, finish, usage


@st.composite
def chat_answers(draw):
    msg = {"role": "assistant", "content": maybe(draw, text)}
    reasoning = maybe(draw, text)
    if reasoning:
        msg["reasoning_content"] = reasoning
    calls = [{"id": f"call_{i}", "type": "function",
              "function": {"name": draw(name),
                           "arguments": json.dumps(draw(args), separators=(",", ":"))}}
             for i in range(draw(st.integers(0, 3)))]
    if calls:
        msg["tool_calls"] = calls
    finish = "tool_calls" if calls else draw(st.sampled_from(["stop", "length"]))
    usage = {"prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 49,
             "prompt_tokens_details": {"cached_tokens": 8},
             "completion_tokens_details": {"reasoning_tokens": 3}}
    return {"id": "chatcmpl-z", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": msg, "finish_reason": finish}], "usage": usage}


def _as_chat_stream(body, cuts):
    msg = body["choices"][0]["message"]

    def chunk(delta=None, finish=None, **extra):
        choices = [] if delta is None else [{"index": 0, "delta": delta,
                                             "finish_reason": finish}]
        return {"id": body["id"], "object": "chat.completion.chunk", "created": 1,
                "model": body["model"], "choices": choices, **extra}

    out = [chunk({"role": "assistant"})]
    out += [chunk({"reasoning_content": p}) for p in _pieces(cuts, msg.get("reasoning_content")
                                                             or "")]
    out += [chunk({"content": p}) for p in _pieces(cuts, msg.get("content") or "")]
    for i, call in enumerate(msg.get("tool_calls") or []):
        fn = call["function"]
        out.append(chunk({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                          "function": {"name": fn["name"], "arguments": ""}}]}))
        out += [chunk({"tool_calls": [{"index": i, "function": {"arguments": p}}]})
                for p in _pieces(cuts, fn["arguments"])]
    out += [chunk({}, body["choices"][0]["finish_reason"]), chunk(usage=body["usage"]), "[DONE]"]
    return out


@SETTINGS
@given(chat_answers(), st.lists(st.integers(0, 200), max_size=4))
def test_chat_stream_to_gemini_equals_nonstream(body, cuts):
    frames = _run(ChatToGeminiStream, _as_chat_stream(body, cuts))
    parts, finish, usage = _accumulate_gemini(frames)
    whole = chat_response_to_gemini(body)
    cand = whole["candidates"][0]
    assert parts == cand["content"]["parts"]
    assert finish == cand["finishReason"] and usage == whole["usageMetadata"]
    assert {f[1]["responseId"] for f in frames} == {whole["responseId"]}


def test_usage_round_trip_is_exact_for_google_totals():
    u = {"promptTokenCount": 1000, "candidatesTokenCount": 50, "cachedContentTokenCount": 900,
         "thoughtsTokenCount": 25, "totalTokenCount": 1075}
    assert _canonical_usage(u) == u
    assert usage_from_gemini(u) == Usage(input_tokens=100, output_tokens=75,
                                         cache_read_tokens=900, reasoning_tokens=25)
