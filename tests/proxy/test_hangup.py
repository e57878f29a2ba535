"""One watcher per request: a client hanging up ends a stream quietly; any other cancellation still propagates."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from guard.errors import ClientDisconnected
from guard.hangup import EventStream, HangUp


class Client:
    """The ASGI side of one request: the body was read; `hang_up()` delivers the disconnect."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def hang_up(self) -> None:
        self.gone.set()


def endless(closed: list[str]) -> AsyncIterator[bytes]:
    async def body() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"data: {}\n\n"
                await asyncio.sleep(0.01)
        finally:
            closed.append("closed")

    return body()


async def respond(client: Client, closed: list[str]) -> None:
    with HangUp(client.receive) as hangup:
        stream = EventStream(endless(closed), {"x-guard-exchange-id": "x"}, hangup.handover())
    await stream({"type": "http"}, client.receive, client.send)


def test_a_client_hanging_up_mid_stream_ends_it_quietly_and_closes_the_body() -> None:
    async def main() -> None:
        client, closed = Client(), []
        task = asyncio.ensure_future(respond(client, closed))
        await asyncio.sleep(0.05)
        client.hang_up()
        await asyncio.wait_for(task, 2)  # returns: the hang-up's cancellation is absorbed
        assert closed == ["closed"]
        assert client.sent[0]["type"] == "http.response.start" and len(client.sent) > 2
        assert not task.cancelled()

    asyncio.run(main())


def test_a_cancellation_that_is_not_the_clients_propagates_and_still_closes_the_body() -> None:
    async def main() -> None:
        client, closed = Client(), []
        task = asyncio.ensure_future(respond(client, closed))
        await asyncio.sleep(0.05)
        task.cancel()  # a server shutting down, say
        with pytest.raises(asyncio.CancelledError):
            await task
        assert closed == ["closed"]

    asyncio.run(main())


def test_work_cut_short_by_a_hang_up_raises_client_disconnected() -> None:
    async def main() -> None:
        client = Client()

        async def handler() -> None:
            with HangUp(client.receive) as hangup:
                await hangup.wait(asyncio.sleep(10))

        task = asyncio.ensure_future(handler())
        await asyncio.sleep(0.01)
        client.hang_up()
        with pytest.raises(ClientDisconnected):
            await asyncio.wait_for(task, 2)

    asyncio.run(main())
