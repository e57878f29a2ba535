"""A client that hangs up mid-stream stops the upstream generation and still leaves a finished exchange."""

from __future__ import annotations

import threading
import time

import httpx
from support.upstream import LONG

from guard.pipeline import Exchange


class Collect:
    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []
        self.done = threading.Event()

    def record(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)
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
