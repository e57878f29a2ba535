"""Micro-batcher behaviour: batching, order, cancellation, errors, closing."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from guard.triage.batcher import BatcherClosed, MicroBatcher


class Recorder:
    """A batch function that remembers the batches it saw (and can be slowed down or made to fail)."""

    def __init__(self, delay: float = 0.0, fail_on: object = None) -> None:
        self.batches: list[list[int]] = []
        self.delay = delay
        self.fail_on = fail_on
        self.threads: set[str] = set()

    def __call__(self, items: list[int]) -> list[int]:
        self.threads.add(threading.current_thread().name)
        self.batches.append(list(items))
        if self.fail_on in items:
            raise ValueError("bad item")
        time.sleep(self.delay)
        return [i * 10 for i in items]


async def test_concurrent_callers_share_batches_and_each_gets_its_own_result() -> None:
    fn = Recorder()
    b: MicroBatcher[int, int] = MicroBatcher(fn, max_batch=8, max_wait_ms=20)
    await b.start()
    try:
        results = await asyncio.gather(*(b.submit(i) for i in range(20)))
    finally:
        await b.aclose()
    assert results == [i * 10 for i in range(20)]
    assert max(len(x) for x in fn.batches) == 8  # full batches are cut at max_batch
    assert len(fn.batches) == 3
    assert sorted(i for x in fn.batches for i in x) == list(range(20))
    assert all(name.startswith("triage") or name.startswith("batcher") for name in fn.threads)


async def test_single_caller_waits_at_most_max_wait() -> None:
    fn = Recorder()
    b: MicroBatcher[int, int] = MicroBatcher(fn, max_batch=32, max_wait_ms=5)
    t0 = time.perf_counter()
    assert await b.submit(7) == 70
    elapsed = time.perf_counter() - t0
    await b.aclose()
    assert elapsed < 0.5
    assert fn.batches == [[7]]


async def test_cancelled_waiting_caller_does_not_break_the_others() -> None:
    fn = Recorder(delay=0.05)
    b: MicroBatcher[int, int] = MicroBatcher(fn, max_batch=4, max_wait_ms=1)
    await b.start()
    first = asyncio.create_task(b.submit(0))  # occupies the worker for 50 ms
    await asyncio.sleep(0.01)
    waiting = [asyncio.create_task(b.submit(i)) for i in (1, 2, 3)]
    await asyncio.sleep(0.005)
    waiting[1].cancel()  # gives up while queued
    results = await asyncio.gather(first, waiting[0], waiting[2])
    with pytest.raises(asyncio.CancelledError):
        await waiting[1]
    await b.aclose()
    assert results == [0, 10, 30]
    assert 2 not in [i for x in fn.batches for i in x]  # skipped, not computed


async def test_failed_batch_reaches_its_callers_and_the_batcher_keeps_working() -> None:
    fn = Recorder(fail_on=3)
    b: MicroBatcher[int, int] = MicroBatcher(fn, max_batch=2, max_wait_ms=5)
    results = await asyncio.gather(b.submit(3), b.submit(4), return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)
    assert await b.submit(5) == 50
    await b.aclose()


async def test_closing_fails_callers_still_waiting() -> None:
    fn = Recorder(delay=0.1)
    b: MicroBatcher[int, int] = MicroBatcher(fn, max_batch=1, max_wait_ms=0)
    await b.start()
    tasks = [asyncio.create_task(b.submit(i)) for i in range(3)]
    await asyncio.sleep(0.02)
    await b.aclose()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert any(isinstance(o, BatcherClosed) for o in outcomes)


async def test_lone_caller_at_an_idle_batcher_does_not_wait_but_concurrent_callers_do() -> None:
    fn = Recorder()
    b: MicroBatcher[int, int] = MicroBatcher(fn, max_batch=32, max_wait_ms=200)
    try:
        t0 = time.perf_counter()
        assert await b.submit(1) == 10
        assert time.perf_counter() - t0 < 0.15  # far below max_wait: nothing else was in flight
        await asyncio.gather(*(b.submit(i) for i in range(2, 6)))  # several together: load seen
        t1 = time.perf_counter()
        assert await b.submit(9) == 90
        assert time.perf_counter() - t1 >= 0.15  # under load the batcher waits for company
    finally:
        await b.aclose()


async def test_batches_take_owners_round_robin_with_at_most_per_owner_items_each() -> None:
    fn = Recorder(delay=0.05)
    b: MicroBatcher[int, int] = MicroBatcher(fn, max_batch=4, max_wait_ms=0, per_owner=2)
    await b.start()
    try:
        busy = asyncio.create_task(b.submit(0))  # occupies the worker while the queues fill
        await asyncio.sleep(0.01)
        big = [asyncio.create_task(b.submit(100 + i, owner="big")) for i in range(10)]
        small = [asyncio.create_task(b.submit(i, owner="small")) for i in (1, 2)]
        await asyncio.gather(busy, *big, *small)
    finally:
        await b.aclose()
    second = fn.batches[1]
    assert sorted(second) == [1, 2, 100, 101]  # the small request rides in the very next batch
    assert all(sum(1 for i in batch if i >= 100) <= 2 for batch in fn.batches)


async def test_a_request_with_many_items_holds_one_worker_and_another_request_runs_on_the_next() -> None:
    fn = Recorder(delay=0.2)
    b: MicroBatcher[int, int] = MicroBatcher(fn, max_batch=4, max_wait_ms=0, workers=2, per_owner=4)
    await b.start()
    try:
        big = [asyncio.create_task(b.submit(100 + i, owner="big")) for i in range(12)]  # three batches of 4
        await asyncio.sleep(0.02)
        t0 = time.perf_counter()
        assert await b.submit(7, owner="small") == 70
        waited = time.perf_counter() - t0
        await asyncio.gather(*big)
    finally:
        await b.aclose()
    assert waited < 0.35  # its own 0.2 s run, not behind the big request's 0.6 s
    assert all(not (set(batch) & {7}) or batch == [7] for batch in fn.batches)
