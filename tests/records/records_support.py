"""Shared helpers for the record tests: record/exchange factories, Postgres schemas, a TCP relay to cut."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from guard import domain
from guard.pipeline import Exchange, RailDecision, TriageResult
from guard.records import ExchangeRecord, Message

PG_HOST = os.environ.get("GUARD_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("GUARD_TEST_PG_PORT", "5432"))
PG_BASE = "postgresql+psycopg://postgres@{host}:{port}/test"


def make_record(
    i: int,
    *,
    tenant: str = "acme",
    flags: tuple[str, ...] = (),
    profile: str | None = None,
    created_at: datetime | None = None,
) -> ExchangeRecord:
    return ExchangeRecord(
        exchange_id=f"ex-{i:07d}-{uuid.uuid4().hex[:6]}",
        tenant=tenant,
        profile=profile,
        created_at=created_at or datetime(2026, 1, 1, tzinfo=UTC) + timedelta(milliseconds=i),
        model="smollm2",
        messages=[Message(role="user", content=f"question {i}")],
        response=f"answer {i}",
        triage_scores={"violence": 0.01 * (i % 100)},
        flags=sorted(flags),
    )


def make_exchange(i: int, *, tenant: str = "acme", flags: set[str] | None = None, text: str = "hello") -> Exchange:
    ex = Exchange(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        tenant=tenant,
        messages=[domain.Message.user(f"{text} {i}")],
        model="smollm2",
        profile="default",
    )
    ex.triage = TriageResult(scores={"violence": 0.9, "benign": 0.1}, labels=("violence",))
    ex.decisions.append(RailDecision(rail="triage_block", stage="input", result="block", score=0.9))
    ex.response_text = "I can't help with that."
    ex.finish_reason = "content_filter"
    ex.flags = set(flags or ())
    return ex


def pg_reachable(host: str = PG_HOST, port: int = PG_PORT) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def pg_url(schema: str, host: str = PG_HOST, port: int = PG_PORT) -> str:
    return PG_BASE.format(host=host, port=port) + f"?options=-csearch_path%3D{schema}"


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh schema for one test (parallel runs never share tables); dropped afterwards."""
    import psycopg

    schema = f"gt_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"host={PG_HOST} port={PG_PORT} user=postgres dbname=test", autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema
    finally:
        with psycopg.connect(f"host={PG_HOST} port={PG_PORT} user=postgres dbname=test", autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


class Relay:
    """TCP relay 127.0.0.1:<port> -> target. `cut()` kills every connection and refuses new ones (the database
    is gone, as far as the client can tell); `restore()` accepts again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        lst = socket.socket()
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind(("127.0.0.1", self.port))
        lst.listen(64)
        self._listener = lst
        threading.Thread(target=self._accept, args=(lst,), daemon=True).start()

    def cut(self) -> None:
        lst, self._listener = self._listener, None
        if lst is not None:
            with contextlib.suppress(OSError):
                lst.shutdown(socket.SHUT_RDWR)
            lst.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    close = cut

    def _accept(self, lst: socket.socket) -> None:
        while True:
            try:
                client, _ = lst.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
