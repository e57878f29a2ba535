"""The client hanging up on a request, watched by one task from the pipeline's first await to a stream's last byte.

A client that goes away stops the work done for it: the upstream call is cancelled instead of generating (and
billing) an answer nobody reads, and the exchange is recorded as `client_disconnected`. One watcher serves the
whole request. Starlette's `StreamingResponse` would start a second one for the stream, inside an anyio task
group: about 30 µs of CPU per streamed request here, a tenth of what the proxy adds over a bare one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import TypeVar

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from guard.errors import ClientDisconnected

_T = TypeVar("_T")


class HangUp:
    """Cancels the current task when the client disconnects (the body has been read by then: the next message
    the server has for the request is its disconnect). As a context manager it stops watching on exit, unless
    it was handed over to a stream (`handover`), which then stops it after the last byte."""

    def __init__(self, receive: Receive) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        # A plain function, not a method: a task holding `self` would make a reference cycle per request, left to
        # the garbage collector (25 µs of CPU per request measured here).
        self._watcher = asyncio.create_task(_watch(receive, task))
        self._handed_over = False

    def __enter__(self) -> HangUp:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._handed_over:
            self.close()

    def handover(self) -> HangUp:
        self._handed_over = True
        return self

    def claim(self) -> bool:
        """After a `CancelledError`: whether the hang-up caused it (it is then absorbed), or something else did
        (shutdown) and it must propagate."""
        if self._watcher.done() and not self._watcher.cancelled():
            self.task.uncancel()
            return True
        return False

    async def wait(self, work: Awaitable[_T]) -> _T:
        """`work`, or `ClientDisconnected` when the client hangs up first."""
        try:
            return await work
        except asyncio.CancelledError:
            if not self.claim():
                raise
            raise ClientDisconnected("the client disconnected before its answer was ready") from None

    def close(self) -> None:
        self._watcher.cancel()


async def _watch(receive: Receive, task: asyncio.Task[object]) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    task.cancel()


class EventStream(Response):
    """A `text/event-stream` response whose body stops when the request's `HangUp` fires; the body generator is
    closed whatever happens (its `finally` records the exchange)."""

    media_type = "text/event-stream"

    def __init__(self, body: AsyncIterator[bytes], headers: Mapping[str, str], hangup: HangUp) -> None:
        self.body_iterator = body
        self.hangup = hangup
        self.status_code = 200
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not self.hangup.claim():
                raise
        finally:
            self.hangup.close()
            await self.body_iterator.aclose()  # type: ignore[attr-defined]
