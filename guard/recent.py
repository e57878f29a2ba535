"""Recently served exchanges, kept so that feedback can reach one whose record was not stored (or not yet).

Flagged and sampled exchanges are on their way to the database; a clean exchange that was not sampled exists
nowhere else, so a compact snapshot of it is kept for `ttl_s`. Feedback on it then stores it after all.

`LocalRecent` is this process's memory (one process, or tests); `RedisRecent` is shared by every replica and
worker, so feedback works whichever of them receives it. Redis was chosen over a light Postgres row by
`bench/recent_store.py` (README, Deploy). Snapshots hold the exchange's texts before PII masking (the record is
masked when it is built): Redis keeps them for `ttl_s` only, in memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Protocol

import orjson

from guard import metrics
from guard.redisbatch import Command, RedisBatch, Script
from guard.store.snapshot import Snapshot

log = logging.getLogger("guard.recent")


class Claim:
    """What `claim` found: nothing (None is returned instead), a record on its way (`snapshot` None), or a
    snapshot that the caller must now store."""

    __slots__ = ("snapshot",)

    def __init__(self, snapshot: Snapshot | None) -> None:
        self.snapshot = snapshot


class Recent(Protocol):
    ttl_s: float

    def remember(self, exchange_id: str, tenant: str, snap: Snapshot | None) -> None: ...

    async def claim(self, exchange_id: str, tenant: str) -> Claim | None: ...


class LocalRecent:
    """In-process, bounded by count and age. Thread-safe: `remember` may run off the event loop."""

    def __init__(self, ttl_s: float = 900.0, size: int = 4096) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._items: OrderedDict[str, tuple[float, str, Snapshot | None]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, exchange_id: str, tenant: str, snap: Snapshot | None) -> None:
        with self._lock:
            self._items[exchange_id] = (time.monotonic(), tenant, snap)
            if len(self._items) > self.size:
                self._items.popitem(last=False)

    def take(self, exchange_id: str, tenant: str) -> Claim | None:
        with self._lock:
            entry = self._items.get(exchange_id)
            if entry is None or entry[1] != tenant or time.monotonic() - entry[0] > self.ttl_s:
                return None
            self._items[exchange_id] = (entry[0], tenant, None)  # one claim stores it; later ones find it kept
        return Claim(entry[2])

    async def claim(self, exchange_id: str, tenant: str) -> Claim | None:
        return self.take(exchange_id, tenant)


class RedisRecent:
    """One key per exchange (`guard:recent:<id>`, JSON [tenant, snapshot or null]) expiring after `ttl_s`.

    `remember` does not wait: the entries go out with the process's next Redis round trip (`guard.redisbatch`),
    one Lua call for all of them, while the response goes out, so they have landed long before a user can send
    feedback. At most `max_pending` wait for a round trip (Redis slow or down); past that an entry is not kept,
    and counted. A claim swaps the entry for its "kept" form with one `SET ... XX KEEPTTL GET`, so two replicas
    claiming at once store the exchange once.
    """

    PREFIX = "guard:recent:"
    KEEP = Script("for i, key in ipairs(KEYS) do redis.call('set', key, ARGV[i + 1], 'EX', ARGV[1]) end")

    def __init__(self, batch: RedisBatch, ttl_s: float = 900.0, max_pending: int = 10_000) -> None:
        self.batch = batch
        self.client = batch.client  # redis.asyncio.Redis, for claims
        self.ttl_s = ttl_s
        self.max_pending = max_pending
        self._queue: list[tuple[str, bytes]] = []  # key, JSON
        self._dropped = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    def remember(self, exchange_id: str, tenant: str, snap: Snapshot | None) -> None:
        item = (self.PREFIX + exchange_id, _dumps([tenant, snap]))
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # called off the loop (a worker thread): hand it over
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._push, item)
            return
        self._push(item)

    def _push(self, item: tuple[str, bytes]) -> None:
        if len(self._queue) >= self.max_pending:
            metrics.RECENT_STORE_ERRORS.inc()
            if not self._dropped:  # one line per backlog, not one per request
                log.warning("recent exchanges not kept: %d already wait for Redis", len(self._queue))
            self._dropped += 1
            return
        self._queue.append(item)
        self.batch.later(self._drain)

    def _drain(self) -> list[Command]:
        if not self._queue:
            return []
        batch, self._queue, self._dropped = self._queue, [], 0

        def kept(reply: Any) -> None:
            if isinstance(reply, BaseException):
                metrics.RECENT_STORE_ERRORS.inc(len(batch))
                log.warning("%d recent exchanges not kept in Redis: %s", len(batch), reply)

        keys = [key for key, _ in batch]
        return [Command(self.KEEP, keys, [max(1, int(self.ttl_s)), *(value for _, value in batch)], kept)]

    async def claim(self, exchange_id: str, tenant: str) -> Claim | None:
        key = self.PREFIX + exchange_id
        try:
            raw = await self.client.get(key)
            if raw is None:
                return None
            owner, snap = json.loads(raw)
            if owner != tenant:
                return None
            if snap is None:
                return Claim(None)
            old = await self.client.set(key, json.dumps([tenant, None]), xx=True, keepttl=True, get=True)
        except Exception as exc:
            metrics.RECENT_STORE_ERRORS.inc()
            log.warning("recent exchange %s: Redis lookup failed: %s", exchange_id, exc)
            return None
        if old is None:
            return None  # expired between the two calls
        _, snap = json.loads(old)
        return Claim(tuple(snap) if snap is not None else None)  # JSON lists unpack as the tuples did


def _dumps(value: Any) -> bytes:
    """JSON, by orjson: 0.5 µs for a typical snapshot where `json.dumps` takes 9, paid on every clean request."""
    try:
        return orjson.dumps(value)
    except TypeError:  # what orjson refuses and json takes (a lone surrogate in a text, an int past 64 bits)
        return json.dumps(value, separators=(",", ":")).encode()
