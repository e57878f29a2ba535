"""Micro-batching for a synchronous batch function called from asyncio, fair across callers.

Callers that arrive together share one call: a worker takes the first waiting item, then collects more until
`max_batch` items or `max_wait_ms` have passed, and runs the function in a thread so the event loop stays free.
While a batch runs, new arrivals queue up and form the next batch. A cancelled caller is skipped (or its result
dropped) without affecting the others.

Fairness: items are queued per owner (one request), and a batch is filled round-robin across owners, at most
`per_owner` items of each. An owner's items run on one worker at a time, so with `workers` > 1 a request with
many items occupies one worker while another request's items run on the next: a large request cannot starve
small ones, it only takes longer itself.

The wait is adaptive: a caller that arrives alone at an idle batcher runs at once, since waiting would only add
latency. The wait applies once callers are seen arriving together (the last batch held several items, or more
arrived while it ran), which is when it buys larger batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class BatcherClosed(RuntimeError):
    """The batcher was closed while a caller was waiting."""


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        fn: Callable[[list[T]], list[R]],
        *,
        max_batch: int = 32,
        max_wait_ms: float = 2.0,
        name: str = "batcher",
        workers: int = 1,
        per_owner: int | None = None,
    ) -> None:
        if max_batch < 1 or workers < 1:
            raise ValueError("max_batch and workers must be >= 1")
        self._fn = fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.workers = workers
        self.per_owner = min(per_owner or max_batch, max_batch)
        self._name = name
        self._pending: OrderedDict[Hashable, deque[tuple[T, asyncio.Future[R]]]] = OrderedDict()
        self._busy: set[Hashable] = set()  # owners with items in a running batch
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._pool: ThreadPoolExecutor | None = None
        self._contended = False

    async def start(self) -> None:
        if not self._tasks:
            self._wake = asyncio.Event()
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=self._name)
            self._tasks = [asyncio.create_task(self._loop(), name=f"{self._name}-{i}") for i in range(self.workers)]

    async def aclose(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for queue in self._pending.values():
            for _, fut in queue:
                if not fut.done():
                    fut.set_exception(BatcherClosed(f"{self._name} closed"))
        self._pending.clear()
        self._busy.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    async def submit(self, item: T, owner: Hashable | None = None) -> R:
        """`item`'s result. Items of one `owner` (a request) share its turn; None: an owner of its own."""
        if not self._tasks:
            await self.start()
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        key = owner if owner is not None else fut
        queue = self._pending.get(key)
        if queue is None:
            queue = self._pending[key] = deque()
        queue.append((item, fut))
        self._wake.set()
        return await fut

    def _ready(self) -> bool:
        return any(owner not in self._busy for owner in self._pending)

    def _fill(self, batch: list[tuple[T, asyncio.Future[R]]], taken: dict[Hashable, int]) -> None:
        """Add waiting items round-robin across owners not running elsewhere, `per_owner` each at most."""
        progress = True
        while progress and len(batch) < self.max_batch:
            progress = False
            for owner in list(self._pending):
                if len(batch) >= self.max_batch:
                    return
                mine = taken.get(owner)
                if (mine is None and owner in self._busy) or (mine or 0) >= self.per_owner:
                    continue
                entry = self._next(owner)
                if entry is None:
                    continue
                batch.append(entry)
                taken[owner] = (mine or 0) + 1
                self._busy.add(owner)
                progress = True

    def _next(self, owner: Hashable) -> tuple[T, asyncio.Future[R]] | None:
        queue = self._pending[owner]
        entry = None
        while queue and entry is None:
            candidate = queue.popleft()
            if not candidate[1].done():  # skip callers that gave up while waiting
                entry = candidate
        if queue:
            self._pending.move_to_end(owner)  # the next fill starts with the other owners
        else:
            del self._pending[owner]
        return entry

    async def _collect(self, taken: dict[Hashable, int]) -> list[tuple[T, asyncio.Future[R]]]:
        # Items live in queues and the event only says "look": a timed-out wait can never lose an item.
        while not self._ready():
            self._wake.clear()
            await self._wake.wait()
        deadline = time.perf_counter() + (self.max_wait_s if self._contended else 0.0)
        batch: list[tuple[T, asyncio.Future[R]]] = []
        while True:
            self._fill(batch, taken)
            left = deadline - time.perf_counter()
            if len(batch) >= self.max_batch or left <= 0:
                return batch
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)

    async def _loop(self) -> None:
        while True:
            taken: dict[Hashable, int] = {}
            try:
                batch = await self._collect(taken)
                if batch:
                    await self._run(batch)
            finally:
                self._busy.difference_update(taken)
                if taken:
                    self._wake.set()  # those owners' next items may run now, on any worker

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        items = [item for item, _ in batch]
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._pool, self._fn, items)
            if len(results) != len(items):
                raise RuntimeError(
                    f"{self._name}: batch function returned {len(results)} results for {len(items)} items"
                )
        except asyncio.CancelledError:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(BatcherClosed(f"{self._name} closed"))
            raise
        except Exception as exc:  # the batch failed: every caller in it gets the error
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        self._contended = len(batch) > 1 or bool(self._pending)
        for (_, fut), result in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(result)
