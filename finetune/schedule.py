"""Step 6, schedule: `guard retrain` runs one cycle under a lock; `--every 24h` repeats it in-process.

The file lock stops two runs on one host (cron overlapping a slow cycle); with a Postgres database an advisory
lock also stops two hosts (e.g. a CronJob whose previous pod is still running).
"""

from __future__ import annotations

import fcntl
import os
import re
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class LockBusy(RuntimeError):
    pass


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Non-blocking exclusive flock; released by the kernel even if the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Path(path).read_text().strip() or "another process"
            raise LockBusy(f"another retrain run holds {path} ({holder})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}".encode())
        yield
    finally:
        os.close(fd)


@contextmanager
def advisory_lock(engine: Any, key: str) -> Iterator[None]:
    """Postgres session advisory lock (no-op on other databases)."""
    if engine is None or engine.dialect.name != "postgresql":
        yield
        return
    from sqlalchemy import text

    lock_id = zlib.crc32(key.encode())
    with engine.connect() as conn:
        if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_id}).scalar():
            raise LockBusy(f"another retrain run holds the database advisory lock for {key!r}")
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_id})
            conn.commit()


@contextmanager
def retrain_lock(state_dir: Path, model: str, engine: Any = None) -> Iterator[None]:
    with file_lock(Path(state_dir) / model / "retrain.lock"), advisory_lock(engine, f"guard-retrain:{model}"):
        yield


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_interval(text: str) -> float:
    """'90s', '15m', '24h', '7d' -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text or "")
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"invalid interval {text!r}: use a number and s, m, h or d, e.g. 24h")
    return float(m.group(1)) * _UNITS[m.group(2)]


def every(
    interval_s: float,
    job: Callable[[], Any],
    *,
    log: Callable[[str], None] = print,
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """Run `job` now and then every interval (measured start to start); a failed run is logged, not fatal."""
    while not stop():
        started = time.monotonic()
        try:
            job()
        except LockBusy as exc:
            log(f"skipped: {exc}")
        except Exception as exc:  # a scheduler that dies on one bad night stops retraining for good
            log(f"retrain failed: {type(exc).__name__}: {exc}")
        delay = max(0.0, interval_s - (time.monotonic() - started))
        deadline = time.monotonic() + delay
        while not stop() and time.monotonic() < deadline:
            time.sleep(min(1.0, deadline - time.monotonic()))
