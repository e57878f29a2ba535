"""Micro-batching for a synchronous batch function called from asyncio.

Callers that arrive together share one call: the worker takes the first waiting item, then collects more until
`max_batch` items or `max_wait_ms` have passed, and runs the function in a thread so the event loop stays free.
While a batch runs, new arrivals queue up and form the next batch. A cancelled caller is skipped (or its result
dropped) without affecting the others.

The wait is adaptive: a caller that arrives alone at an idle batcher runs at once, since waiting would only add
latency. The wait applies once callers are seen arriving together (the last batch held several items, or more
arrived while it ran), which is when it buys larger batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class BatcherClosed(RuntimeError):
    """The batcher was closed while a caller was waiting."""


class MicroBatcher(Generic[T, R]):
    def __init__(
        self, fn: Callable[[list[T]], list[R]], *, max_batch: int = 32, max_wait_ms: float = 2.0, name: str = "batcher"
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self._fn = fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self._name = name
        self._pending: deque[tuple[T, asyncio.Future[R]]] = deque()
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._contended = False

    async def start(self) -> None:
        if self._worker is None:
            self._wake = asyncio.Event()
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
            self._worker = asyncio.create_task(self._loop(), name=self._name)

    async def aclose(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        while self._pending:
            _, fut = self._pending.popleft()
            if not fut.done():
                fut.set_exception(BatcherClosed(f"{self._name} closed"))
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    async def submit(self, item: T) -> R:
        if self._worker is None:
            await self.start()
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        self._wake.set()
        return await fut

    async def _collect(self) -> list[tuple[T, asyncio.Future[R]]]:
        # Items live in a deque and the event only says "look": a timed-out wait can never lose an item.
        while not self._pending:
            self._wake.clear()
            await self._wake.wait()
        deadline = time.perf_counter() + (self.max_wait_s if self._contended else 0.0)
        batch: list[tuple[T, asyncio.Future[R]]] = []
        while True:
            while self._pending and len(batch) < self.max_batch:
                item, fut = self._pending.popleft()
                if not fut.done():  # skip callers that gave up while waiting
                    batch.append((item, fut))
            left = deadline - time.perf_counter()
            if len(batch) >= self.max_batch or left <= 0:
                return batch
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if not batch:
                continue
            items = [item for item, _ in batch]
            try:
                results = await loop.run_in_executor(self._pool, self._fn, items)
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
                continue
            self._contended = len(batch) > 1 or bool(self._pending)
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
