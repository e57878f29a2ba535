"""The record write path: the request hands its exchange over and never waits on the database.

record() (event loop) -> bounded queue -> writer thread -> batch insert
                                                        `-> spool file when the database fails, replayed later
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from guard import metrics
from guard.pipeline import Exchange
from guard.recent import LocalRecent, Recent
from guard.records import ExchangeRecord
from guard.store.db import insert_new_records
from guard.store.deadline import DatabaseTimeout, DeadlineCaller
from guard.store.snapshot import record_from_snapshot, snapshot
from guard.store.spool import Spool, SpoolFull

if TYPE_CHECKING:
    from guard.settings import Settings

log = logging.getLogger("guard.store")

Mask = Callable[[str], str]
# Errors that mean "database not available now" (down, unreachable, locked): retry later from the spool.
# Anything else the database raises is about the records themselves.
_UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout, OSError, DatabaseTimeout)
Item = Exchange | ExchangeRecord
T = TypeVar("T")


class RecordWriter:
    """Implements `guard.pipeline.Recorder`. Flagged exchanges are always kept, clean ones with `sample_rate`."""

    def __init__(
        self,
        engine: Engine,
        *,
        spool_dir: Path,
        sample_rate: float = 0.05,
        queue_size: int = 10_000,
        batch_size: int = 256,
        spool_max_bytes: int = 256 * 1024 * 1024,
        mask: Mask | None = None,
        retry_interval_s: float = 1.0,
        idle_wake_s: float = 0.25,
        linger_s: float = 0.1,
        recent: Recent | None = None,
        db_timeout_s: float = 5.0,
        drain_timeout_s: float = 10.0,
        prepare: Callable[[], object] | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        """`db_timeout_s` bounds every database call (a hung database counts as down); `drain_timeout_s` bounds
        shutdown (whatever is not in the database by then goes to the spool); `prepare` (migrations) runs
        before the first write, and again after a failed attempt, until it succeeds."""
        self.engine = engine
        self._db = DeadlineCaller(engine, db_timeout_s)
        self.drain_timeout_s = drain_timeout_s
        self._prepare = prepare
        self._prepared = prepare is None
        self._drain_deadline = float("inf")
        self.sample_rate = sample_rate
        self.batch_size = batch_size
        self.mask = _memoized(mask) if mask is not None else None
        self.retry_interval_s = retry_interval_s
        self.idle_wake_s = idle_wake_s
        self.linger_s = linger_s
        self.spool = Spool(spool_dir, spool_max_bytes)
        self._queue: queue.Queue[Item] = queue.Queue(maxsize=queue_size)
        self._rand = rand
        # Where recently served exchanges wait for feedback: this process, or Redis shared by every replica.
        self.recent: Recent = recent if recent is not None else LocalRecent()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._healthy = True
        self._next_retry = 0.0

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        engine: Engine,
        mask: Mask | None = None,
        recent: Recent | None = None,
        prepare: Callable[[], object] | None = None,
    ) -> RecordWriter:
        return cls(
            engine,
            spool_dir=settings.spool_dir,
            sample_rate=settings.record_sample_rate,
            queue_size=settings.record_queue_size,
            batch_size=settings.record_batch_size,
            spool_max_bytes=settings.spool_max_bytes,
            mask=mask if settings.pii_masking else None,
            recent=recent or LocalRecent(settings.recent_ttl_s),
            db_timeout_s=settings.db_statement_timeout_s,
            drain_timeout_s=settings.shutdown_drain_timeout_s,
            prepare=prepare,
        )

    # Request side (event loop): constant time, never raises -------------------------------------------
    def record(self, exchange: Exchange) -> None:
        try:
            if exchange.flags or self._rand() < self.sample_rate:
                self.recent.remember(exchange.id, exchange.tenant, None)
                self._enqueue(exchange)
            else:
                self.recent.remember(exchange.id, exchange.tenant, snapshot(exchange))
        except Exception:  # a recorder bug must not fail the request
            metrics.RECORDS_DROPPED.inc()
            log.exception("record: exchange %s dropped", getattr(exchange, "id", "?"))

    def submit(self, record: ExchangeRecord) -> None:
        """Queue an already built record (no sampling)."""
        self._enqueue(record)

    async def claim(self, exchange_id: str, tenant: str) -> bool:
        """Whether `exchange_id` was recently served to `tenant` here or, with Redis, by any replica (its record
        may not be stored yet). An unsampled exchange is queued for storage now: feedback makes it worth keeping.
        """
        found = await self.recent.claim(exchange_id, tenant)
        if found is None:
            return False
        if found.snapshot is not None:
            self._enqueue(record_from_snapshot(found.snapshot, self.mask))
        return True

    def _enqueue(self, item: Item) -> None:
        try:
            self._queue.put_nowait(item)
            # Here as well as in the writer thread: the gauge must rise while that thread waits on the database.
            metrics.RECORD_QUEUE_DEPTH.set(self._queue.qsize())
            return
        except queue.Full:
            pass
        # The writer is behind: keep the record in the spool (fsync'd by the writer thread, off the request path).
        try:
            self.spool.append([self._build(item)], sync=False)
        except (SpoolFull, OSError):
            metrics.RECORDS_DROPPED.inc()
            log.error("record: queue and spool full, exchange %s dropped", _item_id(item))

    # Lifecycle ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        self.start_thread()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def start_thread(self) -> None:
        metrics.RECORD_STORE_UP.set(1 if self._healthy else 0)
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="guard-record-writer", daemon=True)
            self._thread.start()

    def prepare_now(self) -> str | None:
        """Run `prepare` (migrations) now, bounded. None when done; otherwise why the database is unavailable,
        and the writer starts in spool mode (records are kept and replayed once the database answers)."""
        try:
            self._ensure_prepared()
            return None
        except _UNAVAILABLE as exc:
            self._failed(exc, quiet=True)
            return _first_line(exc)

    def close(self, timeout: float | None = None) -> None:
        """Stop after draining the queue: to the database while `timeout` (default `drain_timeout_s`) lasts,
        then to the spool. Returns within about that time whatever the database does."""
        timeout = self.drain_timeout_s if timeout is None else timeout
        self._drain_deadline = time.monotonic() + timeout
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout + 1.0)
            if self._thread.is_alive():
                log.error("record writer: did not stop within %g s; spooling what is left", timeout)
            self._thread = None
        self._spool_queued()
        self.spool.close()
        metrics.SPOOL_BYTES.set(self.spool.size())
        metrics.RECORD_QUEUE_DEPTH.set(self._queue.qsize())

    def _spool_queued(self) -> None:
        items: list[Item] = []
        with contextlib.suppress(queue.Empty):
            while True:
                items.append(self._queue.get_nowait())
        if items:
            self._to_spool(self._build_all(items))
            for _ in items:
                self._queue.task_done()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued so far is in the database (tests, benchmarks). False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0 and not self.spool.has_data():
                return True
            time.sleep(0.01)
        return False

    @property
    def healthy(self) -> bool:
        return self._healthy

    # Writer thread --------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            items = self._take_batch()
            stopping = self._stop.is_set()
            try:
                if items:
                    self._store(self._build_all(items))
                self._maybe_replay()
            except Exception:  # keep the thread alive whatever happens; the records are in the spool or counted
                log.exception("record writer: unexpected error")
            finally:
                for _ in items:
                    self._queue.task_done()
            metrics.RECORD_QUEUE_DEPTH.set(self._queue.qsize())
            if stopping and self._queue.empty():
                return

    def _take_batch(self) -> list[Item]:
        """Up to batch_size items; waits up to `linger_s` for a batch to fill, since a transaction per record
        costs the serving process far more CPU than the record itself."""
        try:
            items = [self._queue.get(timeout=self.idle_wake_s)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.linger_s
        while len(items) < self.batch_size:
            try:
                items.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            left = deadline - time.monotonic()
            if left <= 0 or self._stop.is_set():
                break
            try:
                items.append(self._queue.get(timeout=left))
            except queue.Empty:
                break
        return items

    def _build(self, item: Item) -> ExchangeRecord:
        return item if isinstance(item, ExchangeRecord) else ExchangeRecord.from_exchange(item, mask=self.mask)

    def _build_all(self, items: list[Item]) -> list[ExchangeRecord]:
        records = []
        for item in items:
            try:
                records.append(self._build(item))
                # Hand the GIL back after each record (masking is regex work): otherwise the event loop may wait
                # a whole switch interval (5 ms) behind this loop, and requests feel it.
                time.sleep(0)
            except Exception:
                metrics.RECORDS_DROPPED.inc()
                log.exception("record: could not build the record of exchange %s", _item_id(item))
        return records

    def _store(self, records: list[ExchangeRecord]) -> None:
        if self._stop.is_set() and time.monotonic() >= self._drain_deadline:
            self._to_spool(records)  # shutting down and out of time: the disk, not the database
            return
        # Older spooled records go first, so the database sees them in order.
        if self._healthy:
            self._maybe_replay()
        if self._healthy:
            try:
                self._write(records)
                return
            except Exception as exc:
                self._failed(exc)
        self._to_spool(records)

    def _to_spool(self, records: list[ExchangeRecord]) -> None:
        try:
            self.spool.append(records)
        except (SpoolFull, OSError) as exc:
            metrics.RECORDS_DROPPED.inc(len(records))
            log.error("record: database down and spool unusable (%s): %d records dropped", exc, len(records))
        metrics.SPOOL_BYTES.set(self.spool.size())

    def _maybe_replay(self) -> None:
        if self._stop.is_set() or not self.spool.has_data():
            return  # a shutdown leaves the spool for the next start rather than spend its drain time on it
        if not self._healthy and time.monotonic() < self._next_retry:
            self.spool.sync()
            return
        try:
            replayed = self.spool.replay(self._write, self.batch_size)
        except Exception as exc:
            self._failed(exc)
            return
        finally:
            metrics.SPOOL_BYTES.set(self.spool.size())
        if not self._healthy or replayed:
            log.info("record writer: database reachable, %d spooled records replayed", replayed)
        self._healthy = True
        metrics.RECORD_STORE_UP.set(1)

    def _call(self, fn: Callable[..., T], *args: object) -> T:
        """A database call within the deadline (shorter while a shutdown's drain time runs out)."""
        timeout = self._db.timeout_s
        if self._stop.is_set():
            timeout = min(timeout, self._drain_deadline - time.monotonic())
        return self._db.call(fn, *args, timeout_s=timeout)

    def _ensure_prepared(self) -> None:
        if not self._prepared and self._prepare is not None:
            self._call(self._prepare)
            self._prepared = True

    def _write(self, records: list[ExchangeRecord]) -> None:
        self._ensure_prepared()
        try:
            new = self._call(insert_new_records, self.engine, records)
        except _UNAVAILABLE:
            raise  # the caller spools and retries
        except Exception:
            new = self._write_one_by_one(records)  # the database answered but refused: isolate the bad record
        for r in records:
            if r.exchange_id in new:
                for flag in r.flags or ("clean",):
                    metrics.EXCHANGES_LOGGED.labels(flag).inc()

    def _write_one_by_one(self, records: list[ExchangeRecord]) -> set[str]:
        new: set[str] = set()
        for r in records:
            try:
                new |= self._call(insert_new_records, self.engine, [r])
            except _UNAVAILABLE:
                raise
            except Exception:
                metrics.RECORDS_DROPPED.inc()
                log.exception("record: the database rejected exchange %s; dropped", r.exchange_id)
        return new

    def _failed(self, exc: Exception, quiet: bool = False) -> None:
        metrics.RECORD_WRITE_FAILURES.inc()
        if self._healthy and not quiet:
            log.warning("record writer: database write failed, spooling: %s", _first_line(exc))
        self._healthy = False
        metrics.RECORD_STORE_UP.set(0)
        self._next_retry = time.monotonic() + self.retry_interval_s


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _memoized(mask: Mask, max_len: int = 16_384, size: int = 512) -> Mask:
    """The same texts recur on every request (system prompts, canned refusals): mask each once (LRU, bounded)."""
    cached = functools.lru_cache(maxsize=size)(mask)

    def masked(text: str) -> str:
        return cached(text) if len(text) <= max_len else mask(text)

    return masked


def _item_id(item: Item) -> str:
    return item.exchange_id if isinstance(item, ExchangeRecord) else item.id
