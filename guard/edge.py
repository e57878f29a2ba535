"""Abuse limits at the ASGI edge, before any route runs: per-endpoint body limits for the small JSON endpoints
(feedback, admin) and throttling of failed authentication per client address.

The chat route enforces its own, larger limit while it reads (`GUARD_MAX_BODY_BYTES`); here the feedback and
admin bodies are bounded so that a 50 MB post is refused after at most the limit's bytes were read, not buffered
whole by the framework. A client address with too many 401s in a window gets 429s until the window passes:
guessing keys costs time, and a successful request never counts.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from guard import metrics


def _error(
    status: int, message: str, type_: str, code: str, headers: list[tuple[bytes, bytes]] | None = None
) -> Callable[[Send], Awaitable[None]]:
    body = json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()

    async def respond(send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *(headers or []),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return respond


class AuthThrottle:
    """At most `limit` failed authentications per client address in `window_s`; then refused until the oldest
    failure leaves the window. Bounded: the `max_clients` most recent addresses are tracked."""

    def __init__(
        self, limit: int, window_s: float, max_clients: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit, self.window_s, self.max_clients, self._clock = limit, window_s, max_clients, clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again (0: now)."""
        seen = self._failures.get(client)
        if seen is None or len(seen) < self.limit:
            return 0.0
        return max(0.0, seen[0] + self.window_s - self._clock())

    def failed(self, client: str) -> None:
        seen = self._failures.get(client)
        if seen is None:
            seen = self._failures[client] = deque(maxlen=self.limit)
            if len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(client)
        seen.append(self._clock())


class EdgeLimits:
    """ASGI middleware: body limits by path prefix, failed-auth throttling."""

    def __init__(self, app: ASGIApp, *, body_limits: dict[str, int], throttle: AuthThrottle) -> None:
        self.app = app
        self.body_limits = sorted(body_limits.items(), key=lambda kv: -len(kv[0]))
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope["client"][0] if scope.get("client") else "?"
        wait = self.throttle.retry_after(client)
        if wait > 0:
            metrics.AUTH_THROTTLED.inc()
            await _error(
                429,
                "too many failed authentication attempts from this address; retry later",
                "rate_limit_error",
                "auth_throttled",
                [(b"retry-after", str(int(wait) + 1).encode())],
            )(send)
            return
        limit = self._limit(scope["path"])
        if limit is not None and scope["method"] in ("POST", "PUT", "PATCH"):
            body = await _read_bounded(scope, receive, limit)
            if body is None:
                await _error(
                    413,
                    f"request body is over the {limit}-byte limit of this endpoint",
                    "invalid_request_error",
                    "request_too_large",
                )(send)
                return
            receive = _replay(body, receive)

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.throttle.failed(client)
            await send(message)

        await self.app(scope, receive, watch)

    def _limit(self, path: str) -> int | None:
        for prefix, limit in self.body_limits:
            if path.startswith(prefix):
                return limit
        return None


async def _read_bounded(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is known to be over `limit` (declared or sent)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)  # disconnected: the app sees an empty body and the client is gone anyway
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later: the client's disconnect

    return replay
