"""Append-only local spool for records the database could not take.

Segments are JSON-lines files `records-<pid>-<seq>.jsonl`. A writer appends to its own active segment and
holds an exclusive `flock` on it, so several worker processes can share one spool directory: any writer may
replay a segment nobody holds (its own closed ones, or those left by a process that was killed). Replay
re-inserts whole segments in name order and deletes them afterwards; inserts are idempotent, so a replay cut
short and repeated stores nothing twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from guard import metrics
from guard.records import ExchangeRecord

log = logging.getLogger("guard.store")

_PREFIX = "records-"
_SUFFIX = ".jsonl"


class SpoolFull(Exception):
    pass


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._active: Path | None = None
        self._fd: int | None = None
        self._seq = 0
        self._unsynced = False
        self._bytes = 0  # cached total of the directory, refreshed by `size()`

    # Writing -------------------------------------------------------------------------------------
    def append(self, records: list[ExchangeRecord], *, sync: bool = True) -> None:
        """Append records as one write; fsync unless the caller batches syncs (`sync=False` + `sync()`)."""
        data = "".join(r.model_dump_json() + "\n" for r in records).encode()
        with self._lock:
            if self._bytes + len(data) > self.max_bytes:
                self._bytes = self._scan()
                if self._bytes + len(data) > self.max_bytes:
                    raise SpoolFull(f"spool is full ({self._bytes} bytes)")
            fd = self._open_active()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            self._bytes += len(data)
            if sync:
                os.fsync(fd)
            else:
                self._unsynced = True

    def sync(self) -> None:
        with self._lock:
            if self._fd is not None and self._unsynced:
                os.fsync(self._fd)
                self._unsynced = False

    def _open_active(self) -> int:
        if self._fd is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._seq += 1
            self._active = self.directory / f"{_PREFIX}{os.getpid()}-{self._seq:09d}-{os.urandom(3).hex()}{_SUFFIX}"
            fd = os.open(self._active, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._fd = fd
        return self._fd

    def rotate(self) -> None:
        """Close the active segment so it can be replayed; the next append starts a new one."""
        with self._lock:
            if self._fd is not None:
                if self._unsynced:
                    os.fsync(self._fd)
                    self._unsynced = False
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
                self._fd, self._active = None, None

    close = rotate

    # Reading -------------------------------------------------------------------------------------
    def segments(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if p.name.startswith(_PREFIX) and p.name.endswith(_SUFFIX))

    def _scan(self) -> int:
        total = 0
        for p in self.segments():
            with contextlib.suppress(FileNotFoundError):
                total += p.stat().st_size
        return total

    def size(self) -> int:
        with self._lock:
            self._bytes = self._scan()
            return self._bytes

    def has_data(self) -> bool:
        return bool(self.segments())

    def replay(self, insert: Callable[[list[ExchangeRecord]], object], batch_size: int) -> int:
        """Insert every segment nobody else holds, oldest first; delete each once stored. Returns records replayed.

        Raises whatever `insert` raises: the segment stays for the next attempt.
        """
        self.rotate()
        done = 0
        for path in self.segments():
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # another writer replayed it meanwhile
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer's active segment, or another writer is replaying it
                if os.fstat(fd).st_nlink == 0:
                    continue  # deleted after we opened it
                for batch in _batches(_read_records(fd), batch_size):
                    insert(batch)
                    done += len(batch)
                path.unlink(missing_ok=True)
            finally:
                os.close(fd)
        with self._lock:
            self._bytes = self._scan()
        return done


def _read_records(fd: int) -> Iterator[ExchangeRecord]:
    with os.fdopen(os.dup(fd), "rb") as fh:
        for line in fh:
            if not line.endswith(b"\n") or not line.strip():
                continue  # a torn last line (killed mid-write) cannot be parsed; the rest of the file can
            try:
                yield ExchangeRecord.model_validate_json(line)
            except ValueError:
                metrics.RECORDS_DROPPED.inc()
                log.error("spool: dropped an unreadable record line (%d bytes)", len(line))


def _batches(items: Iterator[ExchangeRecord], size: int) -> Iterator[list[ExchangeRecord]]:
    batch: list[ExchangeRecord] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
