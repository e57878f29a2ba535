"""The hand-written response encoders: valid OpenAI shapes, and the upstream's body kept as it came."""

from __future__ import annotations

import json

import pytest

from guard import wire
from guard.domain import Answer, Delta, ToolCall

TEXTS = ["plain", 'quotes " and \\ backslash', "new\nline\ttab", "unicode: café ✓ 日本 \u2028", ""]


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("usage", [None, wire.Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7)])
def test_own_completion_body_is_a_valid_chat_completion(text: str, usage: wire.Usage | None) -> None:
    got = wire.completion_body(
        [Answer(text=text, finish_reason="content_filter")],
        None,
        exchange_id="chatcmpl-1",
        model="m-1",
        created=1700000000,
        usage=usage,
    )
    parsed = wire.ChatCompletion.model_validate_json(got)
    assert (parsed.id, parsed.model, parsed.text, parsed.finish_reason) == ("chatcmpl-1", "m-1", text, "content_filter")
    assert parsed.usage == usage


def test_unchanged_upstream_body_is_sent_byte_for_byte() -> None:
    raw = b'{"id": "up-1", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}], "x": 1}'
    reply = wire.reply_from_body(json.loads(raw), raw)
    assert wire.completion_body(reply.choices, reply, exchange_id="e", model="m", created=0, usage=None) == raw


def test_a_blocked_choice_loses_its_tool_calls_and_logprobs_and_keeps_every_other_field() -> None:
    body = {
        "id": "up-1",
        "system_fingerprint": "fp",
        "future_field": [1],
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                },
                "logprobs": {"content": []},
                "finish_reason": "tool_calls",
            },
            {"index": 1, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"},
        ],
    }
    reply = wire.reply_from_body(body)
    assert reply.choices[0].tool_calls == (ToolCall("f", "{}", "c1"),)
    answers = [Answer(0, "no", finish_reason="content_filter", changed=True), reply.choices[1]]
    out = json.loads(wire.completion_body(answers, reply, exchange_id="e", model="m", created=0, usage=None))
    assert out["system_fingerprint"] == "fp" and out["future_field"] == [1] and out["id"] == "up-1"
    assert out["choices"][0] == {
        "index": 0,
        "message": {"role": "assistant", "content": "no"},
        "logprobs": None,
        "finish_reason": "content_filter",
    }
    assert out["choices"][1] == body["choices"][1]


@pytest.mark.parametrize("text", TEXTS)
def test_chunk_frame_is_a_valid_chunk_in_the_upstream_envelope(text: str) -> None:
    envelope = {
        "id": "up-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m-1",
        "system_fingerprint": "fp",
    }
    frame = wire.chunk_frame(envelope, Delta(1, text=text, logprobs=[{"token": "x", "logprob": -1.0}]))
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
    chunk = wire.ChatCompletionChunk.model_validate_json(frame[6:])
    assert (chunk.id, chunk.model, chunk.choices[0].index) == ("up-1", "m-1", 1)
    assert chunk.choices[0].delta.content == (text or None)
    assert json.loads(frame[6:])["system_fingerprint"] == "fp"
