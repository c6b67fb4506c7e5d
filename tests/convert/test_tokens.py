from tokn.convert.tokens import IMAGE_TOKENS, count_tokens, text_tokens

PROSE = (
    "The gateway lets people use their existing subscriptions from any tool. It converts "
    "requests between the chat, messages and responses formats, streams the answers back, "
    "and keeps a count of the tokens each account has used during the day. When a model is "
    "not available, it suggests the closest names instead of failing silently. "
) * 5


def _msgs(text, **extra):
    return {
        "model": "m",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def test_english_prose_near_len_over_4():
    ratio = text_tokens(PROSE) / (len(PROSE) / 4)
    assert 0.6 < ratio < 1.4


def test_not_constant_and_monotonic_in_content():
    counts = [count_tokens(_msgs(PROSE[:n])) for n in (0, 10, 100, 500, len(PROSE))]
    assert counts == sorted(counts)
    assert len(set(counts)) == len(counts)


def test_system_tools_images_and_messages_count():
    base = count_tokens(_msgs("hello"))
    assert count_tokens(_msgs("hello", system="You are terse.")) > base
    tool = {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    assert count_tokens(_msgs("hello", tools=[tool])) > base
    img = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    with_img = _msgs([{"type": "text", "text": "hello"}, img])
    assert count_tokens(with_img) - base == IMAGE_TOKENS
    two = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hello"},
        ],
    }
    assert count_tokens(two) > base


def test_cjk_and_numbers_and_code():
    assert text_tokens("你好世界") == 4
    assert text_tokens("1234567") == 3
    assert text_tokens("    return x") > text_tokens("return x")


def test_other_formats_are_converted():
    chat = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": PROSE},
        ],
    }
    msgs = {"model": "m", "system": "Be brief.", "messages": [{"role": "user", "content": PROSE}]}
    assert count_tokens(chat, "chat") == count_tokens(msgs)
    resp = {"model": "m", "instructions": "Be brief.", "input": PROSE}
    assert count_tokens(resp, "responses") == count_tokens(msgs)
