"""Gemini <-> chat request conversion, case by case (rules: ``tokn/convert/gemini/__init__.py``)."""

import json

from tokn.convert.gemini import chat_request_to_gemini, gemini_request_to_chat
from tokn.convert.gemini.base import decode_call_id, encode_call_id, split_target
from tokn.convert.gemini.schema import json_schema_to_gemini, schema_to_json_schema

PNG = "iVBORw0KGgo="
SIG = "CiQBcsjafEt5dW1vcmUtYnl0ZXM+/w=="

# What google-genai 2.34 put on the wire for a request with tools, an image, a
# signed function call and its response (captured from the fake, verbatim):
# note the snake_case inside nested objects.
SDK_BODY = {
    "contents": [
        {"parts": [{"text": "hello"}, {"inlineData": {"data": PNG, "mime_type": "image/png"}}],
         "role": "user"},
        {"parts": [{"functionCall": {"id": "c1", "args": {"location": "Paris"},
                                     "name": "get_weather"}, "thoughtSignature": SIG}],
         "role": "model"},
        {"parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}}],
         "role": "user"},
    ],
    "systemInstruction": {"parts": [{"text": "be nice"}], "role": "user"},
    "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    "tools": [{"functionDeclarations": [
        {"description": "w", "name": "get_weather",
         "parameters": {"properties": {"location": {"type": "STRING"}}, "required": ["location"],
                        "type": "OBJECT"}},
        {"name": "j", "parameters_json_schema": {"type": "object",
                                                 "properties": {"a": {"type": "integer"}}}}]}],
    "toolConfig": {"functionCallingConfig": {"allowedFunctionNames": ["get_weather"],
                                             "mode": "ANY"}},
    "generationConfig": {
        "temperature": 0.5, "topK": 3.0, "maxOutputTokens": 100, "stopSequences": ["X"],
        "responseMimeType": "application/json",
        "responseSchema": {"properties": {"x": {"type": "STRING"}}, "type": "OBJECT"},
        "thinkingConfig": {"include_thoughts": True, "thinking_budget": 1024}},
}


def test_sdk_body_to_chat():
    chat = gemini_request_to_chat({**SDK_BODY, "model": "models/gemini-2.5-flash",
                                   "stream": True})
    call_id = encode_call_id("c1", SIG)
    assert chat == {
        "model": "gemini-2.5-flash",
        "messages": [
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": [
                {"type": "text", "text": "hello"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": call_id, "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'}}]},
            {"role": "tool", "tool_call_id": call_id, "content": "sunny"},
        ],
        "temperature": 0.5, "max_tokens": 100, "stop": ["X"],
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "response",
            "schema": {"type": "object", "properties": {"x": {"type": "string"}}}}},
        "reasoning_effort": "low",
        "tools": [
            {"type": "function", "function": {
                "name": "get_weather", "description": "w",
                "parameters": {"type": "object", "required": ["location"],
                               "properties": {"location": {"type": "string"}}}}},
            {"type": "function", "function": {
                "name": "j", "parameters": {"type": "object",
                                            "properties": {"a": {"type": "integer"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "stream": True, "stream_options": {"include_usage": True},
    }


def test_chat_back_to_gemini_restores_ids_and_signature_and_drops_what_chat_cannot_say():
    back = chat_request_to_gemini(gemini_request_to_chat({**SDK_BODY, "model": "gemini-2.5-flash"}))
    model, stream, body = split_target(back)
    assert (model, stream) == ("gemini-2.5-flash", False)
    assert body["contents"][1] == {"role": "model", "parts": [
        {"functionCall": {"id": "c1", "name": "get_weather", "args": {"location": "Paris"}},
         "thoughtSignature": SIG}]}
    # the response is matched to its call (by name) and gets the call's id
    assert body["contents"][2]["parts"] == [{"functionResponse": {
        "id": "c1", "name": "get_weather", "response": {"output": "sunny"}}}]
    assert body["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/png",
                                                              "data": PNG}}
    assert body["systemInstruction"] == {"parts": [{"text": "be nice"}]}
    assert "safetySettings" not in body  # dropped by rule: chat has no safety settings
    assert body["generationConfig"] == {
        "temperature": 0.5, "maxOutputTokens": 100, "stopSequences": ["X"],
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object", "properties": {"x": {"type": "string"}}},
        "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}}
    assert body["toolConfig"] == {"functionCallingConfig": {
        "mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    assert [d.get("parametersJsonSchema") for d in body["tools"][0]["functionDeclarations"]] == [
        {"type": "object", "required": ["location"],
         "properties": {"location": {"type": "string"}}},
        {"type": "object", "properties": {"a": {"type": "integer"}}}]


def test_top_k_is_dropped_towards_chat_and_read_from_a_chat_extension():
    chat = gemini_request_to_chat({"contents": [{"parts": [{"text": "x"}]}],
                                   "generationConfig": {"topK": 64, "topP": 0.95}})
    assert "top_k" not in chat and chat["top_p"] == 0.95
    gc = chat_request_to_gemini({"model": "m", "messages": [{"role": "user", "content": "x"}],
                                 "top_k": 40})["generationConfig"]
    assert gc == {"topK": 40}


def test_function_calls_without_ids_get_stable_synthetic_ids_matched_by_name_and_order():
    body = {"contents": [
        {"role": "user", "parts": [{"text": "weather in Oslo and Rome, and the time"}]},
        {"role": "model", "parts": [
            {"text": "Checking."},
            {"functionCall": {"name": "get_weather", "args": {"c": "Oslo"}}},
            {"functionCall": {"name": "get_weather", "args": {"c": "Rome"}}},
            {"functionCall": {"name": "now", "args": {}}}]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "now", "response": {"output": "noon"}}},
            {"functionResponse": {"name": "get_weather", "response": {"output": "cold"}}},
            {"functionResponse": {"name": "get_weather", "response": {"output": "warm"}}},
            {"text": "thanks"}]},
    ]}
    chat = gemini_request_to_chat(body)
    calls = chat["messages"][1]["tool_calls"]
    assert [c["id"] for c in calls] == ["gcall_1_1", "gcall_1_2", "gcall_1_3"]
    assert chat["messages"][1]["content"] == "Checking."
    assert [(m["tool_call_id"], m["content"]) for m in chat["messages"][2:5]] == [
        ("gcall_1_3", "noon"), ("gcall_1_1", "cold"), ("gcall_1_2", "warm")]
    assert chat["messages"][5] == {"role": "user", "content": "thanks"}
    # the same request converts to the same ids again (upstream prompt caches keep hitting)
    assert gemini_request_to_chat(body) == chat
    back = chat_request_to_gemini(chat)
    assert back["contents"] == body["contents"][:2] + [{"role": "user", "parts": [
        {"functionResponse": {"name": "now", "response": {"output": "noon"}}},
        {"functionResponse": {"name": "get_weather", "response": {"output": "cold"}}},
        {"functionResponse": {"name": "get_weather", "response": {"output": "warm"}}},
        {"text": "thanks"}]}]


def test_a_repeated_gemini_call_id_does_not_repeat_in_chat():
    chat = gemini_request_to_chat({"contents": [
        {"role": "model", "parts": [{"functionCall": {"id": "0", "name": "a", "args": {}}},
                                    {"functionCall": {"id": "0", "name": "b", "args": {}}}]},
        {"role": "user", "parts": [
            {"functionResponse": {"id": "0", "name": "b", "response": {"output": "B"}}},
            {"functionResponse": {"id": "0", "name": "a", "response": {"output": "A"}}}]}]})
    calls = chat["messages"][0]["tool_calls"]
    assert [c["id"] for c in calls] == ["0", "gcall_0_1"]
    assert [(m["tool_call_id"], m["content"]) for m in chat["messages"][1:]] == [
        ("gcall_0_1", "B"), ("0", "A")]


def test_an_orphan_function_response_becomes_user_text():
    chat = gemini_request_to_chat({"contents": [
        {"role": "user", "parts": [{"functionResponse": {"name": "ls",
                                                         "response": {"files": ["a"]}}}]}]})
    assert chat["messages"] == [{"role": "user", "content": '[ls returned] {"files":["a"]}'}]


def test_tool_results_text_and_json_both_ways():
    chat = gemini_request_to_chat({"contents": [
        {"role": "model", "parts": [{"functionCall": {"id": "a", "name": "f", "args": {}}},
                                    {"functionCall": {"id": "b", "name": "f", "args": {}}},
                                    {"functionCall": {"id": "c", "name": "f", "args": {}}}]},
        {"role": "user", "parts": [
            {"functionResponse": {"id": "a", "name": "f", "response": {"output": "plain"}}},
            {"functionResponse": {"id": "b", "name": "f", "response": {"temp": 20}}},
            {"functionResponse": {"id": "c", "name": "f",
                                  "response": {"output": '{"looks":"like json"}'}}}]}]})
    assert [m["content"] for m in chat["messages"][1:]] == [
        "plain", '{"temp":20}', '{"output":"{\\"looks\\":\\"like json\\"}"}']
    back = chat_request_to_gemini(chat)["contents"][1]["parts"]
    assert [p["functionResponse"]["response"] for p in back] == [
        {"output": "plain"}, {"temp": 20}, {"output": '{"looks":"like json"}'}]


def test_thoughts_and_signatures_in_model_turns():
    chat = gemini_request_to_chat({"contents": [
        {"role": "user", "parts": [{"text": "hi"}]},
        {"role": "model", "parts": [{"text": "Planning.", "thought": True},
                                    {"text": "", "thought": True, "thoughtSignature": SIG},
                                    {"text": "Hello!"}]},
        {"role": "user", "parts": [{"text": "again"}]},
        {"role": "model", "parts": [{"text": "Hi again.", "thoughtSignature": "t2"}]},
    ]})
    assert chat["messages"][1] == {"role": "assistant", "content": "Hello!",
                                   "reasoning_content": "Planning.", "reasoning_signature": SIG}
    assert chat["messages"][3] == {"role": "assistant", "content": "Hi again.",
                                   "reasoning_signature": "t2"}
    back = chat_request_to_gemini(chat)["contents"]
    assert back[1]["parts"] == [
        {"text": "Planning.", "thought": True, "thoughtSignature": SIG}, {"text": "Hello!"}]
    assert back[3]["parts"] == [{"text": "Hi again.", "thoughtSignature": "t2"}]


def test_chat_messages_to_gemini_turns():
    body = {"model": "gemini-2.5-pro", "messages": [
        {"role": "system", "content": "Be terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
        {"role": "user", "content": [
            {"type": "text", "text": "Look"},
            {"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}},
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
            {"type": "file", "file": {"filename": "a.pdf",
                                      "file_data": "data:application/pdf;base64,JVBERg=="}}]},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "toolu_01", "type": "function",
             "function": {"name": "read", "arguments": '{"p":1}'}},
            {"id": "call_x", "type": "function", "function": {"name": "read", "arguments": "oops"},
             "extra_content": {"google": {"thought_signature": "from-google-compat"}}}]},
        {"role": "tool", "tool_call_id": "toolu_01", "content": [
            {"type": "text", "text": "page"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]},
        {"role": "tool", "tool_call_id": "call_x", "content": "bad args"},
        {"role": "user", "content": "Summarise."},
    ]}
    out = chat_request_to_gemini(body)
    assert out["systemInstruction"] == {"parts": [{"text": "Be terse."}, {"text": "Use tools."}]}
    assert out["contents"] == [
        {"role": "user", "parts": [
            {"text": "Look"},
            {"fileData": {"mimeType": "image/png", "fileUri": "https://x.test/cat.png"}},
            {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
            {"inlineData": {"mimeType": "application/pdf", "data": "JVBERg=="}}]},
        {"role": "model", "parts": [
            {"functionCall": {"id": "toolu_01", "name": "read", "args": {"p": 1}}},
            {"functionCall": {"id": "call_x", "name": "read",
                              "args": {"_raw_arguments": "oops"}},
             "thoughtSignature": "from-google-compat"}]},
        {"role": "user", "parts": [
            {"functionResponse": {"id": "toolu_01", "name": "read",
                                  "response": {"output": "page"}}},
            {"inlineData": {"mimeType": "image/png", "data": PNG}},
            {"functionResponse": {"id": "call_x", "name": "read",
                                  "response": {"output": "bad args"}}},
            {"text": "Summarise."}]},
    ]


def test_empty_texts_never_reach_gemini():
    out = chat_request_to_gemini({"model": "m", "messages": [
        {"role": "user", "content": ""}, {"role": "assistant", "content": "",
                                          "reasoning_signature": "s"},
        {"role": "user", "content": [{"type": "text", "text": ""},
                                     {"type": "text", "text": "x"}]}]})
    assert out["contents"] == [{"role": "user", "parts": [{"text": "x"}]}]


def test_media_from_gemini():
    chat = gemini_request_to_chat({"contents": [{"role": "user", "parts": [
        {"inline_data": {"mime_type": "audio/mp3", "data": "SUQz"}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERg=="}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x.test/a"}},
        {"file_data": {"file_uri": "https://generativelanguage.googleapis.com/v1beta/files/abc",
                       "mime_type": "video/mp4"}},
        {"executableCode": {"language": "PYTHON", "code": "print(1)"}},
        {"codeExecutionResult": {"outcome": "OUTCOME_OK", "output": "1\n"}}]}]})
    assert chat["messages"][0]["content"] == [
        {"type": "input_audio", "input_audio": {"data": "SUQz", "format": "mp3"}},
        {"type": "file", "file": {"filename": "document.pdf",
                                  "file_data": "data:application/pdf;base64,JVBERg=="}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a"}},
        {"type": "file", "file": {
            "file_id": "https://generativelanguage.googleapis.com/v1beta/files/abc"}},
        {"type": "text", "text": "```python\nprint(1)\n```"},
        {"type": "text", "text": "1\n"}]


def test_tool_choice_both_ways():
    def to_chat(mode, names=None):
        fcc = {"mode": mode, **({"allowedFunctionNames": names} if names else {})}
        return gemini_request_to_chat({
            "contents": [{"parts": [{"text": "x"}]}],
            "tools": [{"functionDeclarations": [{"name": "a"}, {"name": "b"}]}],
            "toolConfig": {"functionCallingConfig": fcc}}).get("tool_choice")

    assert [to_chat("AUTO"), to_chat("VALIDATED"), to_chat("NONE"), to_chat("ANY"),
            to_chat("ANY", ["a", "b"]), to_chat("any", ["b"]), to_chat("MODE_UNSPECIFIED")] == [
        "auto", "auto", "none", "required", "required",
        {"type": "function", "function": {"name": "b"}}, None]

    def to_gemini(choice):
        return chat_request_to_gemini({
            "model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": choice,
            "tools": [{"type": "function", "function": {"name": "a"}}]}).get("toolConfig")

    assert to_gemini("auto") == {"functionCallingConfig": {"mode": "AUTO"}}
    assert to_gemini("none") == {"functionCallingConfig": {"mode": "NONE"}}
    assert to_gemini("required") == {"functionCallingConfig": {"mode": "ANY"}}
    assert to_gemini({"type": "function", "function": {"name": "a"}}) == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["a"]}}
    assert to_gemini({"type": "allowed_tools", "allowed_tools": {
        "mode": "auto", "tools": [{"type": "function", "function": {"name": "a"}}]}}) == {
        "functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": ["a"]}}
    assert to_gemini(None) is None
    # no tools: no tool_choice towards chat (OpenAI rejects one without tools)
    assert "tool_choice" not in gemini_request_to_chat({
        "contents": [{"parts": [{"text": "x"}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "NONE"}}})


def test_thinking_config_both_ways():
    def effort(tc):
        return gemini_request_to_chat({"contents": [{"parts": [{"text": "x"}]}],
                                       "generationConfig": {"thinkingConfig": tc}}
                                      ).get("reasoning_effort")

    assert [effort({"thinkingLevel": "HIGH"}), effort({"thinking_level": "low"}),
            effort({"thinkingLevel": "THINKING_LEVEL_UNSPECIFIED"}),
            effort({"thinkingBudget": 0}), effort({"thinkingBudget": -1}),
            effort({"thinkingBudget": 512}), effort({"thinkingBudget": 1024}),
            effort({"thinkingBudget": 8192}), effort({"thinkingBudget": 24576}),
            effort({"includeThoughts": True})] == [
        "high", "low", None, "none", None, "minimal", "low", "medium", "high", None]

    def config(effort, model):
        return chat_request_to_gemini({"model": model, "reasoning_effort": effort,
                                       "messages": [{"role": "user", "content": "x"}]}
                                      )["generationConfig"]["thinkingConfig"]

    assert config("high", "gemini-3-pro-preview") == {"thinkingLevel": "high",
                                                      "includeThoughts": True}
    assert config("none", "gemini-3-flash-preview") == {"thinkingLevel": "minimal",
                                                        "includeThoughts": False}
    assert config("xhigh", "gemini-3.1-pro-preview")["thinkingLevel"] == "high"
    assert config("low", "gemini-2.5-flash") == {"thinkingBudget": 1024, "includeThoughts": True}
    assert config("medium", "gemini-2.5-flash")["thinkingBudget"] == 8192
    assert config("none", "gemini-2.5-flash") == {"thinkingBudget": 0, "includeThoughts": False}
    assert config("none", "gemini-2.5-pro") == {"thinkingBudget": 128, "includeThoughts": True}
    for e in ("minimal", "low", "medium", "high"):  # efforts survive chat -> Gemini -> chat
        for model in ("gemini-2.5-flash", "gemini-3-pro-preview"):
            assert effort(config(e, model)) == e
    assert "generationConfig" not in chat_request_to_gemini(
        {"model": "m", "reasoning_effort": "bogus", "messages": [{"role": "user", "content": "x"}]})


def test_generation_config_from_chat():
    gc = chat_request_to_gemini({
        "model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "x"}],
        "temperature": 0.2, "top_p": 0.8, "max_completion_tokens": 50, "max_tokens": 999,
        "stop": "END", "n": 2, "seed": 7, "presence_penalty": 0.1, "frequency_penalty": 0.3,
        "logprobs": True, "top_logprobs": 3, "response_format": {"type": "json_object"},
        "parallel_tool_calls": False, "user": "u1"})["generationConfig"]
    assert gc == {"temperature": 0.2, "topP": 0.8, "candidateCount": 2, "seed": 7,
                  "presencePenalty": 0.1, "frequencyPenalty": 0.3, "responseLogprobs": True,
                  "logprobs": 3, "maxOutputTokens": 50, "stopSequences": ["END"],
                  "responseMimeType": "application/json"}


def test_json_mime_without_schema_is_json_object_and_text_mime_is_nothing():
    def fmt(gc):
        return gemini_request_to_chat({"contents": [{"parts": [{"text": "x"}]}],
                                       "generationConfig": gc}).get("response_format")

    assert fmt({"responseMimeType": "application/json"}) == {"type": "json_object"}
    assert fmt({"response_mime_type": "application/json",
                "response_json_schema": {"type": "array"}}) == {
        "type": "json_schema", "json_schema": {"name": "response", "schema": {"type": "array"}}}
    assert fmt({"responseMimeType": "text/plain"}) is None


def test_builtin_tools_are_dropped():
    chat = gemini_request_to_chat({"contents": [{"parts": [{"text": "x"}]}],
                                   "tools": [{"googleSearch": {}}, {"codeExecution": {}}]})
    assert "tools" not in chat
    out = chat_request_to_gemini({"model": "m", "messages": [{"role": "user", "content": "x"}],
                                  "tools": [{"type": "web_search"}]})
    assert "tools" not in out


def test_call_id_encoding():
    assert encode_call_id("c1") == "c1"
    chat_id = encode_call_id("gcall_3_1", "a+b/c==")
    assert set(chat_id) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
    assert decode_call_id(chat_id) == (None, "a+b/c==")
    assert decode_call_id(encode_call_id("xyz", "s")) == ("xyz", "s")
    assert decode_call_id("toolu_01") == ("toolu_01", None)
    assert decode_call_id("") == (None, None)
    assert decode_call_id(encode_call_id("k", "skip_thought_signature_validator")) == (
        "k", "skip_thought_signature_validator")


def test_schema_openapi_to_json_and_back():
    openapi = {
        "type": "OBJECT", "description": "d", "nullable": True,
        "properties": {
            "name": {"type": "STRING", "min_length": 1, "example": "Ann", "format": "email"},
            "tags": {"type": "ARRAY", "items": {"type": "STRING", "enum": ["a", "b"]},
                     "maxItems": 3},
            "pet": {"ref": "#/defs/Pet"},
            "either": {"any_of": [{"type": "INTEGER"}, {"type": "NUMBER", "minimum": 0.5}],
                       "nullable": True}},
        "required": ["name"], "propertyOrdering": ["name", "tags"],
        "defs": {"Pet": {"type": "OBJECT", "additional_properties": False}},
    }
    js = schema_to_json_schema(openapi)
    assert js == {
        "type": ["object", "null"], "description": "d", "required": ["name"],
        "properties": {
            "name": {"type": "string", "format": "email", "minLength": 1, "examples": ["Ann"]},
            "tags": {"type": "array", "maxItems": 3,
                     "items": {"type": "string", "enum": ["a", "b"]}},
            "pet": {"$ref": "#/$defs/Pet"},
            "either": {"anyOf": [{"type": "integer"}, {"type": "number", "minimum": 0.5},
                                 {"type": "null"}]}},
        "$defs": {"Pet": {"type": "object", "additionalProperties": False}},
    }
    back = json_schema_to_gemini(js)
    expected = json.loads(json.dumps(openapi).replace("min_length", "minLength")
                          .replace("any_of", "anyOf").replace("additional_properties",
                                                              "additionalProperties"))
    del expected["propertyOrdering"]  # dropped: JSON Schema has no key order
    assert back == expected


def test_json_schema_features_outside_the_subset():
    assert json_schema_to_gemini({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": ["string", "integer"], "const": "x", "examples": [],
        "allOf": [{"description": "only one"}],
        "oneOf": None,
    }) == {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}], "description": "only one",
           "enum": ["x"]}
    assert json_schema_to_gemini({"oneOf": [{"type": "string"}, {"type": "null"}],
                                  "definitions": {"A": {"type": "boolean"}},
                                  "$ref": "#/definitions/A"}) == {
        "anyOf": [{"type": "STRING"}], "nullable": True, "defs": {"A": {"type": "BOOLEAN"}},
        "ref": "#/defs/A"}
