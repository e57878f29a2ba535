"""Bounded work per request, fair across requests: a huge prompt cannot stall a small one, cheap rails run
before the classifier, and a total deadline ends an upstream that trickles its answer."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route
from support.records import wait_for_record

FILLER = "The committee reviewed the quarterly figures and agreed to meet again next week. "
BIG = FILLER * 12_000  # 972 kB: under the 1 MB body limit
TRICKLE_INTERVAL_S = 0.4


def _chat(url: str, content: str, *, model: str = "gpt-fake", stream: bool = False, timeout: float = 120) -> Any:
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": content}]}
    return httpx.post(f"{url}/chat/completions", json=body, timeout=timeout)


def test_a_990_kB_message_does_not_stall_a_concurrent_tiny_request(proxy: Any, triage_model_dir: Path) -> None:
    # No rails: nothing refuses the big prompt early, the classifier meets all of it (today: minutes of windows).
    p = proxy(triage_enabled=True, triage_model=triage_model_dir, max_body_bytes=1_000_000, triage_max_wait_ms=1)
    assert _chat(p.v1, "warm up").status_code == 200
    big: dict[str, Any] = {}

    def send_big() -> None:
        t0 = time.perf_counter()
        big["response"] = _chat(p.v1, BIG)
        big["seconds"] = time.perf_counter() - t0

    thread = threading.Thread(target=send_big)
    thread.start()
    time.sleep(0.3)  # the big request is being classified
    t0 = time.perf_counter()
    tiny = _chat(p.v1, "what is the capital of France?")
    tiny_s = time.perf_counter() - t0
    thread.join(120)
    assert tiny.status_code == 200 and big["response"].status_code == 200
    assert tiny_s < 3.0, f"the tiny request waited {tiny_s:.2f} s behind the big one"
    assert big["seconds"] < 30.0  # its own work is bounded too (16 windows, not ~2,400)


def test_an_oversized_request_is_refused_by_the_length_rail_without_reaching_the_classifier(
    proxy: Any, triage_model_dir: Path
) -> None:
    p = proxy(
        triage_enabled=True,
        triage_model=triage_model_dir,
        rails_enabled=True,
        record_enabled=True,
        record_sample_rate=1.0,
        max_body_bytes=1_000_000,
    )
    r = _chat(p.v1, BIG)
    body = r.json()
    assert r.status_code == 200 and body["choices"][0]["finish_reason"] == "content_filter"
    record = wait_for_record(p, r.headers["x-guard-exchange-id"])
    assert [d.rail for d in record.decisions if d.result == "block"] == ["length"]
    assert record.triage_scores == {}  # the classifier never ran
    assert record.profile == "default" and record.rails_hash == p.resources.rails_hash


def _trickling_upstream() -> Starlette:
    """An upstream that answers 200 at once, then sends its body one byte every `TRICKLE_INTERVAL_S`: every
    read succeeds, so no read timeout ever fires."""

    async def completions(request: Request) -> StreamingResponse:
        body = await request.json()
        if body.get("stream"):
            first = {
                "id": "c1",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "m",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "finish_reason": None}],
            }
            payload = b"data: " + json.dumps(first).encode() + b"\n\n" + b'data: {"id": "c1", "choices": []}\n\n' * 50
            media = "text/event-stream"
        else:
            answer = {
                "id": "c1",
                "object": "chat.completion",
                "created": 1,
                "model": "m",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}
                ],
            }
            payload, media = json.dumps(answer).encode(), "application/json"
        head = payload.index(b"\n\n") + 2 if body.get("stream") else 0

        async def trickle() -> AsyncIterator[bytes]:
            if head:
                yield payload[:head]
            for i in range(head, len(payload)):
                await asyncio.sleep(TRICKLE_INTERVAL_S)
                yield payload[i : i + 1]

        return StreamingResponse(trickle(), media_type=media)

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


def test_an_upstream_trickling_its_answer_gets_a_504_at_the_request_deadline(proxy: Any, serve_app: Any) -> None:
    slow = serve_app(_trickling_upstream())
    p = proxy(upstream_url=f"{slow.url}/v1", request_timeout_s=1.5, record_enabled=True, record_sample_rate=1.0)
    t0 = time.perf_counter()
    r = _chat(p.v1, "hello", timeout=30)
    elapsed = time.perf_counter() - t0
    assert r.status_code == 504, r.text
    assert r.json()["error"]["code"] == "upstream_timeout"
    assert 1.4 < elapsed < 4.0  # the deadline, not the ~25 s the whole body would take
    record = wait_for_record(p, r.headers["x-guard-exchange-id"])
    assert record.error == "upstream_timeout"


def test_a_stream_trickling_after_its_first_chunk_ends_with_an_error_event_at_the_deadline(
    proxy: Any, serve_app: Any
) -> None:
    slow = serve_app(_trickling_upstream())
    p = proxy(upstream_url=f"{slow.url}/v1", request_timeout_s=1.5, record_enabled=True, record_sample_rate=1.0)
    t0 = time.perf_counter()
    r = _chat(p.v1, "hello", stream=True, timeout=30)
    elapsed = time.perf_counter() - t0
    assert r.status_code == 200  # headers went out with the first chunk
    frames = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    assert frames[-1]["error"]["code"] == "upstream_timeout"
    assert "data: [DONE]" not in r.text
    assert 1.4 < elapsed < 4.0
    record = wait_for_record(p, r.headers["x-guard-exchange-id"])
    assert record.error == "upstream_timeout"
