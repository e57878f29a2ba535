"""The fleet's Redis work in one process against the real Redis on 127.0.0.1: batched round trips, the limit
counters' Lua scripts (checked against the `limits` library reading the same keys), the recent-exchange store.

The two-replica behaviour over HTTP is tests/records/test_replicas.py.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aredis
from limits import parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import FixedWindowRateLimiter, SlidingWindowCounterRateLimiter
from support.localredis import REDIS_URL, needs_redis

from guard import metrics
from guard.errors import RateLimited
from guard.limits import Limiter, Rule
from guard.limits_redis import ADMIT, CHARGE, RedisCounters
from guard.recent import RedisRecent
from guard.redisbatch import Command, RedisBatch, Script
from guard.resp import Connection
from guard.wire import Usage

pytestmark = needs_redis


class CountingBatch(RedisBatch):
    """The real batch, counting its round trips."""

    def __init__(self, url: str, client: Any) -> None:
        super().__init__(Connection(url), client)
        self.round_trips = 0

    async def _execute(self, commands: list[Command]) -> list[Any]:
        self.round_trips += 1
        return await super()._execute(commands)


@pytest.fixture
async def batch() -> AsyncIterator[CountingBatch]:
    client = aredis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    # Loaded first: on a Redis that has not seen them (a fresh machine, CI) a script's first use answers NOSCRIPT
    # and is sent again, a second round trip these counts are not about (that path has its own test below).
    for script in (ADMIT, CHARGE, RedisRecent.KEEP):
        await client.script_load(script.source)
    b = CountingBatch(REDIS_URL, client)
    yield b
    await b.aclose()
    await client.aclose()


async def round_trips_reach(batch: CountingBatch, n: int, timeout_s: float = 5.0) -> None:
    """Background work goes out 5 ms after it is queued; a loaded machine may take longer to get it there."""
    deadline = time.monotonic() + timeout_s
    while batch.round_trips < n and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # room for a second, unwanted round trip to show up


def limiter(batch: RedisBatch, *specs: tuple[str, str, str]) -> Limiter:
    return Limiter([Rule(scope, kind, parse(text)) for scope, kind, text in specs], RedisCounters(batch))  # type: ignore[arg-type]


async def library_stats(item_text: str, *ident: str) -> tuple[int, float]:
    """What the `limits` library itself reads from the same Redis: remaining, seconds to reset."""
    storage = RedisStorage(f"async+{REDIS_URL}", implementation="redispy")
    stats = await SlidingWindowCounterRateLimiter(storage).get_window_stats(parse(item_text), *ident)
    return stats.remaining, stats.reset_time - time.time()


async def test_concurrent_requests_share_round_trips_and_exactly_the_limit_is_admitted(batch) -> None:
    busy, quiet = uuid.uuid4().hex, uuid.uuid4().hex
    lim = limiter(batch, ("key", "requests", "20/minute"))

    async def one(key: str) -> tuple[str, int]:
        try:
            await lim.admit("acme", key)
            return key, 200
        except RateLimited as exc:
            assert 1 <= exc.retry_after <= 60
            return key, 429

    codes = await asyncio.gather(*(one(busy if i % 3 else quiet) for i in range(75)))  # 50 busy, 25 quiet
    assert [codes.count((busy, 200)), codes.count((busy, 429))] == [20, 30]
    assert [codes.count((quiet, 200)), codes.count((quiet, 429))] == [20, 5]
    assert batch.round_trips <= 5, f"{batch.round_trips} round trips for 75 concurrent requests"


async def test_far_from_the_limit_requests_do_not_wait_for_redis_and_are_counted_and_near_it_redis_decides(
    batch,
) -> None:
    key = uuid.uuid4().hex
    lim = limiter(batch, ("key", "requests", "100/minute"))
    await lim.admit("acme", key)  # nothing known yet: waits for Redis
    assert batch.round_trips == 1
    for _ in range(50):  # 99 of room, far above the margin of 32: admitted on the spot
        await lim.admit("acme", key)
    assert batch.round_trips == 1
    await round_trips_reach(batch, 2)  # and counted with the next round trip
    assert batch.round_trips == 2
    assert (await library_stats("100/minute", "requests", "key", key))[0] == 49

    async def one() -> int:
        try:
            await lim.admit("acme", key)
            return 200
        except RateLimited:
            return 429

    codes = await asyncio.gather(*(one() for _ in range(60)))
    assert codes.count(200) == 49  # exactly the limit: within the margin, Redis decided each request
    assert (await library_stats("100/minute", "requests", "key", key))[0] == 0


async def test_the_counters_are_the_limits_librarys_own_keys_and_arithmetic(batch) -> None:
    key = uuid.uuid4().hex
    lim = limiter(batch, ("key", "requests", "10/minute"))
    for _ in range(4):
        await lim.admit("acme", key)
    remaining, reset_in = await library_stats("10/minute", "requests", "key", key)
    assert remaining == 6 and 0 < reset_in <= 60
    # and the other way round: hits the library makes count against this process's limit
    storage = RedisStorage(f"async+{REDIS_URL}", implementation="redispy")
    for _ in range(6):
        assert await SlidingWindowCounterRateLimiter(storage).hit(parse("10/minute"), "requests", "key", key)
    with pytest.raises(RateLimited):
        await lim.admit("acme", key)


async def test_a_request_refused_by_one_of_its_windows_is_counted_in_none(batch) -> None:
    key, tenant = uuid.uuid4().hex, f"t-{uuid.uuid4().hex[:8]}"
    lim = limiter(batch, ("key", "requests", "2/minute"), ("tenant", "requests", "100/minute"))
    await lim.admit(tenant, key)
    await lim.admit(tenant, key)
    with pytest.raises(RateLimited, match="API key"):
        await lim.admit(tenant, key)
    assert (await library_stats("100/minute", "requests", "tenant", tenant))[0] == 98  # not 97


async def test_token_charges_between_round_trips_go_as_one_and_a_used_up_window_refuses(batch) -> None:
    key = uuid.uuid4().hex
    lim = limiter(batch, ("key", "tokens", "100/hour"))
    for _ in range(6):
        lim.charge("acme", key, Usage(prompt_tokens=10, completion_tokens=10, total_tokens=20))
    assert batch.round_trips == 0  # background work waits for linger_s
    await round_trips_reach(batch, 1)
    assert batch.round_trips == 1
    storage = RedisStorage(f"async+{REDIS_URL}", implementation="redispy")
    stats = await FixedWindowRateLimiter(storage).get_window_stats(parse("100/hour"), "tokens", "key", key)
    assert stats.remaining == 0 and 3500 < stats.reset_time - time.time() <= 3600  # 120 tokens spent
    with pytest.raises(RateLimited, match="tokens limit") as refused:
        await lim.admit("acme", key)
    assert 3500 < refused.value.retry_after <= 3600


async def test_background_work_rides_along_with_the_next_request_s_round_trip(batch) -> None:
    key = uuid.uuid4().hex
    lim = limiter(batch, ("key", "requests", "100/minute"), ("key", "tokens", "100/hour"))
    lim.charge("acme", key, Usage(prompt_tokens=10, completion_tokens=10, total_tokens=20))
    await lim.admit("acme", key)
    assert batch.round_trips == 1  # the charge went with the admission, not 5 ms later on its own
    assert await batch.client.get("LIMITS:" + parse("100/hour").key_for("tokens", "key", key)) == b"20"


async def test_a_script_redis_does_not_know_is_loaded_and_the_command_sent_again(batch) -> None:
    script = Script(f"return ARGV[1] .. '{uuid.uuid4().hex}'")  # never loaded before: NOSCRIPT at first
    replies: list[Any] = []
    batch.want(lambda: [Command(script, [], ["ok-"], replies.append)])
    await batch.aclose()
    assert len(replies) == 1 and replies[0].decode().startswith("ok-")


async def test_when_redis_is_unreachable_requests_are_admitted_and_the_failure_counted() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = RedisBatch(Connection(f"redis://127.0.0.1:{port}/0", timeout_s=0.5))
    lim = limiter(dead, ("key", "requests", "1/minute"), ("key", "tokens", "1/minute"))
    before = metrics.RATE_LIMIT_BACKEND_ERRORS._value.get()
    await lim.admit("acme", "k")
    await lim.admit("acme", "k")  # over the limit, but nobody can tell
    lim.charge("acme", "k", Usage(prompt_tokens=5, completion_tokens=5, total_tokens=10))
    await dead.aclose()
    assert metrics.RATE_LIMIT_BACKEND_ERRORS._value.get() - before == 3


async def test_recent_exchanges_land_in_redis_with_the_next_round_trip_and_can_be_claimed_once(batch) -> None:
    recent = RedisRecent(batch, ttl_s=60)
    await recent.start()
    ids = [uuid.uuid4().hex for _ in range(5)]
    for i in ids:
        recent.remember(i, "acme", ("snap", i, 1.5))
    await round_trips_reach(batch, 1)
    assert batch.round_trips == 1
    assert 50 < await batch.client.ttl(RedisRecent.PREFIX + ids[0]) <= 60
    assert await recent.claim(ids[0], "globex") is None  # another tenant's exchange
    first = await recent.claim(ids[0], "acme")
    assert first is not None and first.snapshot == ("snap", ids[0], 1.5)
    again = await recent.claim(ids[0], "acme")
    assert again is not None and again.snapshot is None  # already being stored


async def test_recent_exchanges_past_the_pending_bound_are_counted_not_silently_lost(batch) -> None:
    recent = RedisRecent(batch, ttl_s=60, max_pending=3)
    await recent.start()
    before = metrics.RECENT_STORE_ERRORS._value.get()
    ids = [uuid.uuid4().hex for _ in range(5)]
    for i in ids:  # no await in between: none can go out yet
        recent.remember(i, "acme", None)
    assert metrics.RECENT_STORE_ERRORS._value.get() - before == 2
    await batch.aclose()
    kept = [await batch.client.exists(RedisRecent.PREFIX + i) for i in ids]
    assert kept == [1, 1, 1, 0, 0]
