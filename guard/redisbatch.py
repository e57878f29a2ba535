"""One Redis round trip for everything a busy process has to tell Redis at a time.

A round trip costs CPU whatever it carries (about 15 µs over `guard.resp`, 75-110 through redis-py); at 16
connections, when each request paid its own round trip through redis-py for its rate limits and its recent
exchange, that cost a third of the proxy's throughput. Here the work of every request that arrives while a round
trip is in flight goes out together in the next one, one Lua call per kind of work: the cost per request falls
as the load rises.

Urgent work (a request waiting for its admission) starts a round trip at once when none is in flight;
background work (writes after the response) goes with the next one, or in one of its own `linger_s` after it
was queued when no request starts one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from typing import Any

from guard.resp import Connection, ReplyError

log = logging.getLogger("guard.redisbatch")

OnReply = Callable[[Any], None]  # the command's reply (`guard.resp`), or the exception that stopped it


class Script:
    """A Lua script called by its SHA1 (EVALSHA); loaded again when Redis answers NOSCRIPT (a restart, a flush)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def args(self, keys: list[str], argv: list[Any]) -> tuple[Any, ...]:
        return ("EVALSHA", self.sha, len(keys), *keys, *argv)


class Command:
    __slots__ = ("argv", "keys", "on_reply", "script")

    def __init__(self, script: Script, keys: list[str], argv: list[Any], on_reply: OnReply) -> None:
        self.script, self.keys, self.argv, self.on_reply = script, keys, argv, on_reply


Drain = Callable[[], list[Command]]  # everything a producer queued since it was last drained, as commands


class RedisBatch:
    """At most one round trip in flight; what producers queued meanwhile goes in the next one."""

    def __init__(self, connection: Connection, client: Any = None, linger_s: float = 0.005) -> None:
        self.connection = connection
        self.client = client  # redis.asyncio.Redis, for the rare calls that need no batching (feedback claims)
        self.linger_s = linger_s
        self._ready: dict[Drain, None] = {}  # drained into the next round trip
        self._later: dict[Drain, None] = {}  # with the next round trip, or sent by the timer
        self._sender: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def want(self, drain: Drain) -> None:
        """Work a request waits for: in the next round trip, which starts now when none is in flight."""
        self._ready[drain] = None
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_all())

    def later(self, drain: Drain) -> None:
        """Background work: in the next round trip that requests start, or one of its own `linger_s` from now."""
        self._later[drain] = None
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger_s, self._due)

    async def aclose(self) -> None:
        """Send what is queued and wait for it (shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._due()
        if self._sender is not None:
            await asyncio.gather(self._sender, return_exceptions=True)
        await self.connection.aclose()

    def _due(self) -> None:
        self._timer = None
        later, self._later = self._later, {}
        for drain in later:
            self.want(drain)

    async def _send_all(self) -> None:
        while self._ready:
            drains, self._ready, self._later = list({**self._ready, **self._later}), {}, {}
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            commands = [c for drain in drains for c in drain()]
            if commands:
                await self._send(commands)

    async def _send(self, commands: list[Command]) -> None:
        try:
            replies = await self._execute(commands)
            missing = [c for c, r in zip(commands, replies, strict=True) if _is_noscript(r)]
            if missing:  # Redis lost its scripts: load them and send those commands again
                scripts = {c.script.sha: c.script.source for c in missing}
                await self.connection.execute([("SCRIPT", "LOAD", source) for source in scripts.values()])
                again = iter(await self._execute(missing))
                replies = [next(again) if _is_noscript(r) else r for r in replies]
        except Exception as exc:
            replies = [exc] * len(commands)
        for command, reply in zip(commands, replies, strict=True):
            try:
                command.on_reply(reply)
            except Exception:  # one producer's bug must not stop the round trips of the others
                log.exception("Redis reply not handled: %r", command.script.args(command.keys, command.argv)[:2])

    async def _execute(self, commands: list[Command]) -> list[Any]:
        return await self.connection.execute([c.script.args(c.keys, c.argv) for c in commands])


def _is_noscript(reply: Any) -> bool:
    return isinstance(reply, ReplyError) and str(reply).startswith("NOSCRIPT")
