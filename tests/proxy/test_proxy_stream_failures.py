"""A stream the upstream got wrong fails visibly: a body that is not server-sent events, an error event, or a
body that ends without `data: [DONE]` ends the client's stream with an error event (or is a 502 when nothing
was sent yet), is recorded as an upstream error and counted, never `finish_reason: stop` + `[DONE]`."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.records import wait_for_record
from support.upstream import ERROR_FRAME, INTERNAL_ERROR_TEXT, NOT_SSE, TRUNCATED


def recording_proxy(proxy: Any) -> Any:
    return proxy(record_enabled=True, record_sample_rate=1.0)


def stream(p: Any, model: str, content: str) -> httpx.Response:
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": content}]}
    with httpx.stream("POST", f"{p.v1}/chat/completions", json=body, timeout=10) as resp:
        resp.read()
    return resp


def frames(resp: httpx.Response) -> list[str]:
    return [line.removeprefix("data: ") for line in resp.text.splitlines() if line.startswith("data: ")]


def upstream_errors(p: Any, kind: str) -> float:
    text = httpx.get(f"{p.url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "guard_upstream_errors_total" and s.labels == {"backend": "upstream", "kind": kind}:
                return float(s.value)
    return 0.0


def finish_reasons(data: list[str]) -> list[str]:
    return [
        c["finish_reason"]
        for f in data
        if f != "[DONE]"
        for c in json.loads(f).get("choices", [])
        if c.get("finish_reason")
    ]


@pytest.mark.parametrize("content", ["hi", "html"])
def test_stream_answered_with_a_non_sse_body_is_a_502_recorded_as_an_upstream_error(proxy, content: str) -> None:
    p = recording_proxy(proxy)
    before = upstream_errors(p, "not_sse")
    resp = stream(p, NOT_SSE, content)
    assert resp.status_code == 502, resp.text
    error = resp.json()["error"]
    assert (error["type"], error["code"]) == ("upstream_error", "upstream_bad_response")
    assert "server-sent events" in error["message"]
    assert "Unavailable" not in resp.text and "chatcmpl" not in resp.text  # the upstream's body is logged only
    record = wait_for_record(p, resp.headers["x-guard-exchange-id"])
    assert (record.error, record.finish_reason, record.response) == ("upstream_bad_response", None, "")
    assert upstream_errors(p, "not_sse") == before + 1


def test_stream_cut_before_done_ends_with_an_error_event_not_a_finish(proxy) -> None:
    p = recording_proxy(proxy)
    before = upstream_errors(p, "stream_incomplete")
    resp = stream(p, TRUNCATED, "say: one two three")
    assert resp.status_code == 200  # the first chunk was good: headers were already sent
    data = frames(resp)
    assert "[DONE]" not in data
    assert finish_reasons(data) == []
    error = json.loads(data[-1])["error"]
    assert (error["type"], error["code"]) == ("upstream_error", "upstream_stream_incomplete")
    assert "[DONE]" in error["message"]
    record = wait_for_record(p, resp.headers["x-guard-exchange-id"])
    assert (record.error, record.finish_reason) == ("upstream_stream_incomplete", None)
    assert record.response == "one two three"  # what the client was shown before the error
    assert upstream_errors(p, "stream_incomplete") == before + 1


def test_error_event_mid_stream_reaches_the_client_as_an_error_event_without_the_upstream_text(proxy) -> None:
    p = recording_proxy(proxy)
    before = upstream_errors(p, "stream_error")
    resp = stream(p, ERROR_FRAME, "say: one two")
    assert resp.status_code == 200
    data = frames(resp)
    assert "[DONE]" not in data and finish_reasons(data) == []
    error = json.loads(data[-1])["error"]
    assert (error["type"], error["code"]) == ("upstream_error", "upstream_stream_error")
    assert INTERNAL_ERROR_TEXT not in resp.text and "10.0.3.7" not in resp.text
    record = wait_for_record(p, resp.headers["x-guard-exchange-id"])
    assert (record.error, record.finish_reason) == ("upstream_stream_error", None)
    assert upstream_errors(p, "stream_error") == before + 1


def test_error_event_before_any_output_is_a_502(proxy) -> None:
    p = recording_proxy(proxy)
    resp = stream(p, ERROR_FRAME, "say:")
    assert resp.status_code == 502
    error = resp.json()["error"]
    assert (error["type"], error["code"]) == ("upstream_error", "upstream_stream_error")
    assert INTERNAL_ERROR_TEXT not in resp.text
    assert wait_for_record(p, resp.headers["x-guard-exchange-id"]).error == "upstream_stream_error"


@pytest.mark.parametrize("model", [TRUNCATED, ERROR_FRAME])
def test_openai_client_raises_on_a_failed_stream_instead_of_ending_it_normally(proxy, model: str) -> None:
    client = openai.OpenAI(base_url=proxy().v1, api_key="unused", max_retries=0, timeout=10)
    events = client.chat.completions.create(
        model=model, stream=True, messages=[{"role": "user", "content": "say: one two"}]
    )
    text = ""
    with pytest.raises(openai.APIError):
        for chunk in events:
            text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert text == "one two"


def test_done_on_a_last_line_without_its_newline_still_ends_the_stream_normally(proxy, serve_app) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    words = [{"index": 0, "delta": {"content": "fine"}, "finish_reason": None}]
    finish = [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    sse = "".join(f"data: {json.dumps({**chunk, 'choices': c})}\n\n" for c in (words, finish)) + "data: [DONE]"

    async def completions(request: Request) -> Response:
        return Response(sse.encode(), media_type="text/event-stream")

    terse = serve_app(Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])]))
    resp = stream(proxy(upstream_url=f"{terse.url}/v1"), "m", "hi")
    data = frames(resp)
    assert data[-1] == "[DONE]" and finish_reasons(data) == ["stop"]
    assert "".join(c["delta"].get("content") or "" for f in data[:-1] for c in json.loads(f)["choices"]) == "fine"
