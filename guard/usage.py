"""Traffic accounting at the end of each exchange: tokens from the model's usage, requests per tenant, and the
token side of the rate limits. Plugged in as a `Recorder` beside the record writer (`Recorders`)."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from guard import metrics
from guard.limits import Limiter
from guard.metrics import TenantLabels
from guard.pipeline import Exchange, Recorder


def outcome(ex: Exchange) -> str:
    if ex.error is not None:
        return "error"
    return "blocked" if ex.finish_reason == "content_filter" else "ok"


class UsageMeter:
    """Implements `guard.pipeline.Recorder`: counts; never stores anything."""

    def __init__(self, labels: TenantLabels, limiter: Limiter | None = None) -> None:
        self.labels = labels
        self.limiter = limiter

    def record(self, exchange: Exchange) -> None:
        metrics.child(metrics.TENANT_REQUESTS, self.labels(exchange.tenant), outcome(exchange)).inc()
        usage = exchange.usage
        if usage is None:
            return
        metrics.child(metrics.TOKENS, "prompt").inc(usage.prompt_tokens)
        metrics.child(metrics.TOKENS, "completion").inc(usage.completion_tokens)
        if self.limiter is not None:
            self.limiter.charge(exchange.tenant, exchange.api_key_hash, usage)


class Recorders:
    """Several recorders behind the one the pipeline calls; the first is the store's writer, when there is one."""

    def __init__(self, *recorders: Recorder) -> None:
        self.recorders = recorders

    def record(self, exchange: Exchange) -> None:
        for r in self.recorders:
            r.record(exchange)

    def __getattr__(self, name: str) -> Any:  # the writer's own API (claim, flush, recent) stays reachable
        for r in self.recorders:
            if hasattr(r, name):
                return getattr(r, name)
        raise AttributeError(name)


class RequestGauge:
    """ASGI middleware: requests in flight and the duration of every chat request, whatever its outcome (the
    handlers' early errors — 401, 400, 429 — included), until the last byte of a stream."""

    def __init__(self, app: ASGIApp, paths: tuple[str, ...] = ("/v1/chat/completions",)) -> None:
        self.app = app
        self.paths = paths
        self.latency = metrics.REQUEST_LATENCY.labels("chat_completions")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        metrics.IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            metrics.IN_FLIGHT.dec()
            self.latency.observe(time.perf_counter() - t0)
