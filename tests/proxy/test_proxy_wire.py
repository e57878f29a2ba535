"""The hand-written response encoders say exactly what the pydantic wire models say."""

from __future__ import annotations

import json

import pytest

from guard import wire

TEXTS = ["plain", 'quotes " and \\ backslash', "new\nline\ttab", "unicode: café ✓ 日本 \u2028", ""]


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("usage", [None, wire.Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7)])
def test_completion_json_matches_the_pydantic_completion(text: str, usage: wire.Usage | None) -> None:
    expected = wire.completion("chatcmpl-1", "m-1", text, "content_filter", usage)
    expected.created = 1700000000
    got = wire.completion_json("chatcmpl-1", "m-1", 1700000000, text, "content_filter", usage)
    assert json.loads(got) == json.loads(expected.model_dump_json(exclude_none=True))
    assert wire.ChatCompletion.model_validate_json(got).text == text


@pytest.mark.parametrize("text", TEXTS)
def test_sse_chunk_is_a_valid_chunk_frame(text: str) -> None:
    frame = wire.sse_chunk("chatcmpl-1", "m-1", 1700000000, text)
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
    chunk = wire.ChatCompletionChunk.model_validate_json(frame[6:])
    assert (chunk.id, chunk.model, chunk.choices[0].delta.content) == ("chatcmpl-1", "m-1", text)
