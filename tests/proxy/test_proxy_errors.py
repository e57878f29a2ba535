"""Every failure is an OpenAI-shaped error with a real status, never a 200 assistant message."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import openai
import pytest
from support.server import closed_port
from support.upstream import (
    BAD_CHUNK,
    BAD_REQUEST,
    ECHO,
    FLAKY,
    FLAKY_FAILURES,
    MALFORMED,
    OVERLOADED,
    RATE_HEADERS,
    RATE_LIMITED,
    SERVER_ERROR,
    SLOW,
    STALL,
)


def chat(url: str, model: str = ECHO, content: str = "hi", **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=15)


def assert_error(resp: httpx.Response, status: int, type_: str, code: str | None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    assert body["error"]["type"] == type_
    assert body["error"]["code"] == code
    return body["error"]


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_down_is_502(proxy, stream: bool) -> None:
    p = proxy(upstream_url=f"http://127.0.0.1:{closed_port()}/v1")
    err = assert_error(chat(p.url, stream=stream), 502, "upstream_error", "upstream_unreachable")
    assert "unreachable" in err["message"]
    assert "127.0.0.1" not in err["message"]  # the upstream's address is logged, not told to clients


def test_upstream_not_accepting_connections_is_502_after_bounded_retries(proxy) -> None:
    # A listener whose accept queue is full: the kernel drops further SYNs, so connecting hangs.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        p = proxy(upstream_url=f"http://127.0.0.1:{port}/v1", upstream_connect_timeout_s=0.2, upstream_retries=1)
        started = time.monotonic()
        err = assert_error(chat(p.url), 502, "upstream_error", "upstream_unreachable")
        elapsed = time.monotonic() - started
        for filler in fillers:
            filler.close()
    assert "timed out" in err["message"]
    assert 0.4 <= elapsed < 5  # two attempts of 0.2 s, not the read timeout


@pytest.mark.parametrize("stream", [False, True])
def test_slow_upstream_is_504(proxy, stream: bool) -> None:
    p = proxy(upstream_read_timeout_s=0.3)
    assert_error(chat(p.url, SLOW, stream=stream), 504, "upstream_error", "upstream_timeout")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("model", "status", "type_", "code", "param"),
    [
        (SERVER_ERROR, 500, "server_error", "internal_error", None),
        (BAD_REQUEST, 400, "invalid_request_error", "context_length_exceeded", "messages"),
        (RATE_LIMITED, 429, "requests", "rate_limit_exceeded", None),
        (OVERLOADED, 503, "server_error", "overloaded", None),
        ("no-such-model", 404, "invalid_request_error", "model_not_found", "model"),
    ],
)
def test_upstream_error_reaches_the_client_as_sent(
    proxy, stream: bool, model: str, status: int, type_: str, code: str, param: str | None
) -> None:
    resp = chat(proxy().url, model, stream=stream)
    err = assert_error(resp, status, type_, code)
    assert err["param"] == param
    assert resp.headers["x-request-id"].startswith("req_")
    assert resp.headers["x-guard-exchange-id"].startswith("chatcmpl-")


def test_rate_limit_headers_reach_the_client(proxy) -> None:
    resp = chat(proxy().url, RATE_LIMITED)
    assert {k: resp.headers[k] for k in RATE_HEADERS} == RATE_HEADERS


def test_openai_client_sees_the_upstream_429_with_its_retry_after(proxy) -> None:
    client = openai.OpenAI(base_url=proxy().v1, api_key="unused", max_retries=0, timeout=10)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model=RATE_LIMITED, messages=[{"role": "user", "content": "x"}])
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.code == "rate_limit_exceeded"


def test_429_is_passed_on_at_once_unless_status_retries_are_set(proxy, upstream) -> None:
    tag = f"flaky-{time.monotonic_ns()}"
    assert chat(proxy().url, FLAKY, content=tag).status_code == 429  # off by default
    assert chat(proxy(upstream_status_retries=1).url, FLAKY, content=tag + "-b").status_code == 200
    assert upstream.state.attempts[tag + "-b"] == FLAKY_FAILURES + 1


def test_a_retry_after_longer_than_the_max_wait_is_passed_on(proxy) -> None:
    started = time.monotonic()
    resp = chat(proxy(upstream_status_retries=2, upstream_status_retry_max_wait_s=1).url, RATE_LIMITED)
    assert resp.status_code == 429 and time.monotonic() - started < 5  # retry-after: 7 is not waited for


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_error_response_names_the_recorded_exchange(proxy, stream: bool) -> None:
    p = proxy()
    recorded = []

    class Collect:
        def record(self, exchange) -> None:
            recorded.append(exchange)

    p.resources.pipeline.recorder = Collect()
    resp = chat(p.url, SERVER_ERROR, stream=stream)
    assert resp.status_code == 500
    [ex] = recorded
    assert resp.headers["x-guard-exchange-id"] == ex.id
    assert ex.error == "upstream_http_500"


def test_malformed_upstream_body_is_502(proxy) -> None:
    assert_error(chat(proxy().url, MALFORMED), 502, "upstream_error", "upstream_bad_response")


def sse_frames(resp: httpx.Response) -> list[str]:
    return [line.removeprefix("data: ") for line in resp.iter_lines() if line.startswith("data: ")]


def test_malformed_stream_chunk_ends_stream_with_error_frame(proxy) -> None:
    body = {"model": BAD_CHUNK, "stream": True, "messages": [{"role": "user", "content": "say: one two"}]}
    with httpx.stream("POST", f"{proxy().url}/v1/chat/completions", json=body, timeout=10) as resp:
        assert resp.status_code == 200  # the first chunk was good: headers were already sent
        frames = sse_frames(resp)
    error = json.loads(frames[-1])["error"]
    assert error["code"] == "upstream_bad_response"
    assert "[DONE]" not in frames


def test_upstream_stalling_mid_stream_ends_with_timeout_error_frame(proxy) -> None:
    p = proxy(upstream_read_timeout_s=0.3)
    body = {"model": STALL, "stream": True, "messages": [{"role": "user", "content": "say: one two"}]}
    with httpx.stream("POST", f"{p.url}/v1/chat/completions", json=body, timeout=10) as resp:
        frames = sse_frames(resp)
    assert json.loads(frames[-1])["error"]["code"] == "upstream_timeout"


def test_openai_client_raises_typed_errors_not_answers(proxy) -> None:
    client = openai.OpenAI(base_url=proxy().v1, api_key="unused", max_retries=0, timeout=10)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model=SERVER_ERROR, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 500


def post_raw(url: str, content: bytes) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions", content=content, headers={"content-type": "application/json"}, timeout=10
    )


def test_malformed_json_is_400(proxy) -> None:
    err = assert_error(
        post_raw(proxy().url, b'{"model": "gpt-fake", "messages": ['), 400, "invalid_request_error", "invalid_json"
    )
    assert "malformed JSON" in err["message"]


def test_empty_body_is_400(proxy) -> None:
    assert_error(post_raw(proxy().url, b""), 400, "invalid_request_error", "invalid_request")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": ECHO, "messages": []}, "messages"),
        ({"model": ECHO, "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        ({"model": ECHO, "messages": [{"role": "user", "content": "x"}], "temperature": 9}, "temperature"),
        ({"model": ECHO, "messages": [{"role": "user", "content": "x"}], "seed": 2**70}, "seed"),
    ],
)
def test_schema_error_is_400_naming_the_field(proxy, body: dict[str, Any], field: str) -> None:
    err = assert_error(
        post_raw(proxy().url, json.dumps(body).encode()), 400, "invalid_request_error", "invalid_request"
    )
    assert err["param"] == field
    assert f"'{field}'" in err["message"]


def test_body_over_limit_is_413(proxy) -> None:
    p = proxy(max_body_bytes=4096)
    resp = chat(p.url, content="x" * 5000)
    assert_error(resp, 413, "invalid_request_error", "request_too_large")


def test_chunked_body_over_limit_is_413(proxy) -> None:
    p = proxy(max_body_bytes=4096)

    def chunks():
        yield b'{"model": "gpt-fake", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}]}'

    resp = httpx.post(f"{p.url}/v1/chat/completions", content=chunks(), timeout=10)  # no content-length
    assert_error(resp, 413, "invalid_request_error", "request_too_large")


def test_unknown_route_is_openai_shaped_404(proxy) -> None:
    assert_error(httpx.get(f"{proxy().url}/v1/nope"), 404, "invalid_request_error", None)
