"""A lean Redis connection for the request path: commands pipelined over one socket, replies parsed as they come.

redis-py's asyncio client spends about 75-110 µs of CPU per round trip here (pool, retries, per-read timeouts,
event hooks); this asyncio protocol spends about 15 (`bench/redis_roundtrip.py`). At 16 connections that is
the difference between the fleet's limits costing a fifth of the proxy's throughput or a few percent. Rare
calls (feedback claims, the startup check) still use redis-py; its URL parsing is reused here.

RESP2 only (what every Redis answers by default): replies are bytes, int, None, lists of them, or `ReplyError`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any


class ReplyError(Exception):
    """An error reply (`-ERR ...`, `-NOSCRIPT ...`): returned in its command's place, not raised."""


class _Incomplete(Exception):
    pass


def encode(args: tuple[Any, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode() if type(a) is str else a if type(a) is bytes else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def parse(buf: bytes | bytearray, pos: int) -> tuple[Any, int]:
    """One reply starting at `pos`, and where the next starts; raises _Incomplete when more bytes are needed."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line = buf[pos : pos + 1], bytes(buf[pos + 1 : end])
    pos = end + 2
    if kind == b"+":
        return line, pos
    if kind == b":":
        return int(line), pos
    if kind == b"-":
        return ReplyError(line.decode(errors="replace")), pos
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, pos
        if len(buf) < pos + n + 2:
            raise _Incomplete
        return bytes(buf[pos : pos + n]), pos + n + 2
    if kind == b"*":
        n = int(line)
        if n < 0:
            return None, pos
        items = []
        for _ in range(n):
            item, pos = parse(buf, pos)
            items.append(item)
        return items, pos
    raise ConnectionError(f"unexpected reply from Redis: {bytes(buf[pos - 2 : pos + 30])!r}")


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiting: deque[tuple[int, list[Any], asyncio.Future[list[Any]]]] = deque()
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        pos = 0
        try:
            while self.waiting:
                reply, pos = parse(self.buf, pos)
                n, replies, future = self.waiting[0]
                replies.append(reply)
                if len(replies) == n:
                    self.waiting.popleft()
                    if not future.done():
                        future.set_result(replies)
        except _Incomplete:
            pass
        except ConnectionError as exc:
            self._fail(exc)
            return
        del self.buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("Redis closed the connection"))

    def _fail(self, exc: Exception) -> None:
        self.lost = exc
        while self.waiting:
            _, _, future = self.waiting.popleft()
            if not future.done():
                future.set_exception(exc)
        if self.transport is not None:
            self.transport.close()


class Connection:
    """One connection, opened on first use and again after a failure; `execute` sends a pipeline and returns
    its replies in order. A failure (refused, closed, no answer within `timeout_s`) raises and closes it."""

    def __init__(self, url: str, timeout_s: float = 1.0) -> None:
        from redis.asyncio.connection import parse_url

        self.options: dict[str, Any] = dict(parse_url(url))
        self.tls = url.startswith("rediss://")
        self.timeout_s = timeout_s
        self._proto: _Protocol | None = None

    async def execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        proto = self._proto if self._proto is not None and self._proto.lost is None else await self._connect()
        return await self._send(proto, commands)

    async def aclose(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None

    async def _send(self, proto: _Protocol, commands: list[tuple[Any, ...]]) -> list[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        proto.waiting.append((len(commands), [], future))
        assert proto.transport is not None
        proto.transport.write(b"".join(encode(c) for c in commands))
        timer = loop.call_later(self.timeout_s, self._late, proto, future, False)
        try:
            return await future
        finally:
            timer.cancel()  # a grace timer, if one was set, finds the future done

    def _late(self, proto: _Protocol, future: asyncio.Future[list[Any]], again: bool) -> None:
        if future.done():
            return
        if not again:  # after the process stalled, timers run before pending reads: let one I/O turn pass first
            asyncio.get_running_loop().call_later(0.01, self._late, proto, future, True)
            return
        proto._fail(TimeoutError(f"Redis did not answer in {self.timeout_s} s"))

    async def _connect(self) -> _Protocol:
        o = self.options
        loop = asyncio.get_running_loop()
        if "path" in o:
            opening = loop.create_unix_connection(_Protocol, o["path"])
        else:
            opening = loop.create_connection(
                _Protocol, o.get("host", "localhost"), o.get("port", 6379), ssl=self._tls_context()
            )
        _, proto = await asyncio.wait_for(opening, self.timeout_s)
        handshake: list[tuple[Any, ...]] = []
        if o.get("password"):
            handshake.append(("AUTH", *([o["username"]] if o.get("username") else []), o["password"]))
        if o.get("db"):
            handshake.append(("SELECT", o["db"]))
        for reply in await self._send(proto, handshake) if handshake else []:
            if isinstance(reply, ReplyError):
                proto._fail(ConnectionError(f"Redis refused the connection: {reply}"))
                raise ConnectionError(f"Redis refused the connection: {reply}")
        self._proto = proto
        return proto

    def _tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.options.get("ssl_ca_certs"))
        if self.options.get("ssl_cert_reqs") in ("none", ssl.CERT_NONE):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context
