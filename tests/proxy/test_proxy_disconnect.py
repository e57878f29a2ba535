"""A client that hangs up stops the upstream call (mid-stream, before the first token, or waiting for a whole
answer) and still leaves a finished exchange."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import pytest
from support.upstream import HOLD, HOLD_S, LONG, last_user

from guard.pipeline import Exchange


class Collect:
    def __init__(self, expected: int = 1) -> None:
        self.exchanges: list[Exchange] = []
        self.expected = expected
        self.done = threading.Event()

    def record(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)
        if len(self.exchanges) >= self.expected:
            self.done.set()


def test_client_disconnect_mid_stream_cancels_upstream_and_finishes_exchange(proxy, upstream) -> None:
    p = proxy()
    recorder = Collect()
    p.resources.pipeline.recorder = recorder
    tag = f"disconnect-{time.monotonic_ns()}"
    body = {"model": LONG, "stream": True, "messages": [{"role": "user", "content": tag}]}
    received = 0
    with httpx.Client(timeout=10) as client, client.stream("POST", f"{p.v1}/chat/completions", json=body) as resp:
        exchange_id = resp.headers["x-guard-exchange-id"]
        for line in resp.iter_lines():
            received += line.startswith("data: ")
            if received >= 5:
                break  # leaving both blocks closes the connection mid-stream

    # The fake upstream streams for 20 s; it must see the proxy hang up well before that.
    assert upstream.state.wait_stream(tag, timeout_s=10) == "cancelled"
    assert recorder.done.wait(5)
    [ex] = recorder.exchanges
    assert ex.id == exchange_id
    assert ex.error == "client_disconnected"
    assert ex.finish_reason is None
    assert ex.response_text.startswith("w0 w1 w2")
    assert ex.timings["total"] > 0


def test_completed_stream_is_recorded_once_with_full_text(proxy, upstream) -> None:
    p = proxy()
    recorder = Collect()
    p.resources.pipeline.recorder = recorder
    body = {"model": "gpt-fake", "stream": True, "messages": [{"role": "user", "content": "say: a b c"}]}
    with httpx.stream("POST", f"{p.v1}/chat/completions", json=body, timeout=10) as resp:
        resp.read()
    assert recorder.done.wait(5)
    [ex] = recorder.exchanges
    assert (ex.response_text, ex.finish_reason, ex.error) == ("a b c", "stop", None)


def hang_up_once_upstream_has_it(p, upstream, tag: str, stream: bool) -> None:
    """Send a request the upstream holds for `HOLD_S`; close the connection once the upstream has it."""
    body = json.dumps({"model": HOLD, "stream": stream, "messages": [{"role": "user", "content": tag}]}).encode()
    head = "POST /v1/chat/completions HTTP/1.1\r\nhost: guard\r\ncontent-type: application/json\r\n"
    url = urlsplit(p.url)
    with socket.create_connection((url.hostname, url.port)) as conn:
        conn.sendall(f"{head}content-length: {len(body)}\r\n\r\n".encode() + body)
        deadline = time.monotonic() + 10
        while not any(last_user(r.body) == tag for r in list(upstream.state.requests)):
            assert time.monotonic() < deadline, "the request never reached the upstream"
            time.sleep(0.01)


@pytest.mark.parametrize("stream", [False, True], ids=["whole-answer", "before-first-token"])
def test_client_disconnect_before_the_answer_cancels_the_upstream_call(proxy, upstream, stream: bool) -> None:
    p = proxy()
    recorder = Collect(expected=8)
    p.resources.pipeline.recorder = recorder
    tags = [f"hangup-{stream}-{i}-{time.monotonic_ns()}" for i in range(8)]
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda tag: hang_up_once_upstream_has_it(p, upstream, tag, stream), tags))

    # The upstream holds each request for 20 s; every one must see the proxy hang up well before that.
    outcomes = [upstream.state.wait_stream(tag, timeout_s=5) for tag in tags]
    assert outcomes == ["cancelled"] * len(tags)
    assert time.monotonic() - started < HOLD_S / 2
    assert recorder.done.wait(5)
    assert sorted(ex.messages[0].text for ex in recorder.exchanges) == sorted(tags)
    assert {(ex.error, ex.finish_reason) for ex in recorder.exchanges} == {("client_disconnected", None)}


def test_client_that_hangs_up_while_sending_its_body_is_no_unhandled_error(proxy, caplog) -> None:
    p = proxy()
    url = urlsplit(p.url)
    head = "POST /v1/chat/completions HTTP/1.1\r\nhost: guard\r\ncontent-type: application/json\r\n"
    with caplog.at_level("WARNING"), socket.create_connection((url.hostname, url.port)) as conn:
        conn.sendall(f"{head}content-length: 1000\r\n\r\n".encode() + b'{"model": "gpt-fake", "mess')
        time.sleep(0.3)  # the proxy is reading the body when the connection closes
    assert httpx.get(f"{p.url}/healthz", timeout=5).status_code == 200
    time.sleep(0.2)
    assert not [r for r in caplog.records if r.exc_info or "unhandled" in r.getMessage()]
