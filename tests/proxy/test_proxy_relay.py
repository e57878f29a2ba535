"""With no output rule that could change an answer, a streamed answer reaches the client as the upstream's own
bytes (its spacing, field order, unknown fields, comments, usage chunk), however the network splits them, and
the record still holds what was said. With output rails on, the proxy writes its own frames (other tests)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route
from support.records import wait_for_record


def _frame(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    # Spaced JSON, a vendor field and a key order the proxy's own frames would not have.
    chunk = {
        "x_vendor": {"shard": 7},
        "id": "chatcmpl-relay",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "vendor-model-2",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()


CALL = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
USAGE = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}

# Each piece is its own write; several split a frame (even between its two newlines) or carry two frames.
TEXT_STREAM = [
    _frame({"role": "assistant", "content": ""}),
    b": keep-alive\n\n",
    _frame({"content": "Hello"})[:-1],
    b"\n" + _frame({"content": ", wor"})[:20],
    _frame({"content": ", wor"})[20:] + _frame({"content": "ld."}),
    _frame({}, "stop"),
    b'data: {"id": "chatcmpl-relay", "choices": [], "usage": ' + json.dumps(USAGE).encode() + b"}\n",
    b"\n",
    b"data: [DONE]\n\n",
]
TOOL_STREAM = [
    _frame({"role": "assistant", "content": None, "tool_calls": [CALL]}),
    _frame({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
    _frame({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    _frame({}, "tool_calls"),
    b"data: [DONE]\n\n",
]


def scripted_upstream(pieces: list[bytes]) -> Starlette:
    async def chat(request: Request) -> StreamingResponse:
        await request.body()

        async def body() -> AsyncIterator[bytes]:
            for piece in pieces:
                yield piece
                await asyncio.sleep(0.02)  # separate network reads at the proxy

        return StreamingResponse(body(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def streamed(p: Any, **extra: Any) -> httpx.Response:
    body = {"model": "vendor-model", "stream": True, "messages": [{"role": "user", "content": "hi"}], **extra}
    with httpx.stream("POST", f"{p.v1}/chat/completions", json=body, timeout=10) as resp:
        resp.read()
    return resp


def relaying_proxy(proxy: Any, serve_app: Any, pieces: list[bytes]) -> Any:
    upstream = serve_app(scripted_upstream(pieces))
    return proxy(upstream_url=f"{upstream.url}/v1", record_enabled=True, record_sample_rate=1.0)


def test_a_stream_with_no_output_rule_reaches_the_client_byte_for_byte(proxy, serve_app) -> None:
    p = relaying_proxy(proxy, serve_app, TEXT_STREAM)
    resp = streamed(p, stream_options={"include_usage": True})
    assert resp.status_code == 200
    assert resp.content == b"".join(TEXT_STREAM)
    record = wait_for_record(p, resp.headers["x-guard-exchange-id"])
    assert record.response == "Hello, world." and record.finish_reason == "stop"
    assert record.upstream_model == "vendor-model-2" and record.stream


def test_a_relayed_tool_call_stream_is_recorded_with_its_assembled_calls(proxy, serve_app) -> None:
    p = relaying_proxy(proxy, serve_app, TOOL_STREAM)
    resp = streamed(p, tools=[{"type": "function", "function": {"name": "get_weather"}}])
    assert resp.content == b"".join(TOOL_STREAM)
    record = wait_for_record(p, resp.headers["x-guard-exchange-id"])
    assert [(c.name, c.arguments, c.id) for c in record.tool_calls] == [("get_weather", '{"city": "Paris"}', "call_1")]
    assert record.finish_reason == "tool_calls" and "model_refused" not in record.flags


def test_a_relayed_stream_cut_off_mid_frame_still_ends_with_a_well_formed_error_event(proxy, serve_app) -> None:
    cut = [TEXT_STREAM[0], _frame({"content": "Hello"})[:-1]]  # the last frame's closing blank line never comes
    p = relaying_proxy(proxy, serve_app, cut)
    resp = streamed(p)
    events = [e for e in resp.text.split("\n\n") if e.strip()]
    payloads = [json.loads(e.removeprefix("data: ")) for e in events]  # one data line per event, each valid JSON
    assert [c["delta"].get("content") for c in (q["choices"][0] for q in payloads[:2])] == ["", "Hello"]
    assert payloads[-1]["error"]["code"] == "upstream_stream_incomplete"


def test_with_output_rails_on_the_proxy_writes_its_own_frames_of_the_same_answer(proxy, serve_app) -> None:
    upstream = serve_app(scripted_upstream(TEXT_STREAM))
    p = proxy(upstream_url=f"{upstream.url}/v1", rails_enabled=True)
    resp = streamed(p)
    assert resp.content != b"".join(TEXT_STREAM)  # rewritten (windows are checked before release)
    frames = [line.removeprefix("data: ") for line in resp.text.splitlines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    text = "".join(
        c["delta"].get("content") or "" for f in frames[:-1] for c in json.loads(f)["choices"] if "delta" in c
    )
    assert text == "Hello, world."
