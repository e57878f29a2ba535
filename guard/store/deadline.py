"""Database calls with a deadline. A database that is down answers with an error; one that hangs (processes
stopped, a network black hole, a lock held for minutes) does not answer at all, and a writer waiting on it
would hold records in memory with nothing on disk. Each call runs on a helper thread and the caller waits at
most the deadline; past it the engine's connections are broken (`guard.store.db.interrupt`) so the helper
thread gets an error and ends, and the caller gets `DatabaseTimeout`, which it treats as "down".
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine

from guard.store.db import interrupt

T = TypeVar("T")


class DatabaseTimeout(Exception):
    """The database did not answer in time (or a previous call to it is still stuck)."""


class DeadlineCaller:
    def __init__(self, engine: Engine, timeout_s: float) -> None:
        self.engine = engine
        self.timeout_s = timeout_s
        self._stuck: threading.Thread | None = None

    @property
    def stuck(self) -> bool:
        return self._stuck is not None and self._stuck.is_alive()

    def call(self, fn: Callable[..., T], *args: Any, timeout_s: float | None = None) -> T:
        """`fn(*args)` within `timeout_s` (default: the caller's), or `DatabaseTimeout`."""
        if self.stuck:
            # Never stack threads on a hung database: the first one still holds its connection.
            raise DatabaseTimeout("a previous database call has not returned yet")
        timeout = self.timeout_s if timeout_s is None else max(0.0, timeout_s)
        done = threading.Event()
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append((True, fn(*args)))
            except BaseException as exc:  # handed to the caller's thread
                outcome.append((False, exc))
            finally:
                done.set()

        worker = threading.Thread(target=run, name="guard-db-call", daemon=True)
        worker.start()
        if not done.wait(timeout):
            self._stuck = worker
            interrupt(self.engine)
            raise DatabaseTimeout(f"the database did not answer within {timeout:g} s")
        ok, value = outcome[0]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]
