"""The write path: sampling, masking, outage → spool → replay (each record exactly once), drain, drops."""

from __future__ import annotations

import random
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from records_support import PG_HOST, PG_PORT, Relay, make_exchange, make_record, pg_url
from sqlalchemy import Engine, func, select

from guard.store.db import make_engine, upgrade
from guard.store.query import count_records, fetch_record, fetch_records
from guard.store.schema import exchanges
from guard.store.writer import RecordWriter


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _ids_once(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(select(exchanges.c.exchange_id, func.count()).group_by(exchanges.c.exchange_id)).all()
    return dict(rows)


async def test_flagged_exchanges_are_always_kept_and_clean_ones_sampled(engine: Engine, tmp_path: Path) -> None:
    writer = RecordWriter(engine, spool_dir=tmp_path / "spool", sample_rate=0.25, rand=random.Random(7).random)
    await writer.start()
    flagged = [make_exchange(i, flags={"blocked_input"}) for i in range(40)]
    clean = [make_exchange(i) for i in range(800)]
    before = _metric("guard_exchanges_logged_total", flag="blocked_input")
    for ex in flagged + clean:
        writer.record(ex)
    await writer.aclose()
    stored = {r.exchange_id for r in fetch_records(engine)}
    assert {ex.id for ex in flagged} <= stored
    kept_clean = len(stored) - len(flagged)
    assert 140 <= kept_clean <= 260, kept_clean  # 25 % of 800 = 200
    assert _metric("guard_exchanges_logged_total", flag="blocked_input") - before == 40


async def test_stored_texts_are_masked_and_the_record_carries_triage_and_decisions(
    engine: Engine, tmp_path: Path
) -> None:
    writer = RecordWriter(engine, spool_dir=tmp_path / "spool", mask=lambda s: s.replace("555-0100", "<PHONE>"))
    await writer.start()
    ex = make_exchange(1, flags={"blocked_input"}, text="call me at 555-0100")
    writer.record(ex)
    await writer.aclose()
    rec = fetch_record(engine, ex.id)
    assert rec is not None
    assert rec.messages[0].content == "call me at <PHONE> 1"
    assert rec.triage_scores == {"violence": 0.9, "benign": 0.1}
    assert [(d.rail, d.result, d.mode) for d in rec.decisions] == [("triage_block", "block", "enforce")]
    assert rec.flags == ["blocked_input"] and rec.profile == "default"


async def test_shutdown_drains_every_queued_record(engine: Engine, tmp_path: Path) -> None:
    writer = RecordWriter(engine, spool_dir=tmp_path / "spool", batch_size=64)
    await writer.start()
    for i in range(3000):
        writer.submit(make_record(i))
    await writer.aclose()
    assert count_records(engine) == 3000


async def test_feedback_claim_stores_an_unsampled_exchange_for_its_own_tenant_only(
    engine: Engine, tmp_path: Path
) -> None:
    writer = RecordWriter(engine, spool_dir=tmp_path / "spool", sample_rate=0.0)
    await writer.start()
    ex = make_exchange(1, tenant="acme")
    writer.record(ex)
    assert not writer.flush(0.3) or count_records(engine) == 0
    assert not await writer.claim(ex.id, "globex")
    assert not await writer.claim("chatcmpl-unknown", "acme")
    assert await writer.claim(ex.id, "acme")
    await writer.aclose()
    assert fetch_record(engine, ex.id) is not None


def _load(writer: RecordWriter, n: int, start: int = 0, pause_every: int = 200) -> list[str]:
    ids = []
    for i in range(start, start + n):
        rec = make_record(i)
        ids.append(rec.exchange_id)
        writer.submit(rec)
        if i % pause_every == 0:
            time.sleep(0.01)
    return ids


@pytest.mark.postgres
def test_postgres_unreachable_mid_load_then_back_keeps_every_record_exactly_once(pg_schema_url, tmp_path) -> None:
    schema, _ = pg_schema_url
    relay = Relay((PG_HOST, PG_PORT))
    engine = make_engine(pg_url(schema, "127.0.0.1", relay.port), connect_timeout_s=2)
    upgrade(engine)
    failures = _metric("guard_record_write_failures_total")
    writer = RecordWriter(engine, spool_dir=tmp_path / "spool", batch_size=100, retry_interval_s=0.1)
    writer.start_thread()
    try:
        ids = _load(writer, 1500)
        relay.cut()  # the database vanishes mid-load: connections reset, new ones refused
        ids += _load(writer, 1500, start=1500)
        deadline = time.monotonic() + 10
        while not writer.spool.has_data() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert writer.spool.has_data(), "records should be spooled while the database is unreachable"
        assert not writer.healthy
        relay.restore()
        ids += _load(writer, 1000, start=3000)
        assert writer.flush(60), "spool was not replayed after the database came back"
        counts = _ids_once(engine)
    finally:
        writer.close()
        relay.close()
        engine.dispose()
    assert sorted(counts) == sorted(ids)
    assert set(counts.values()) == {1}
    assert _metric("guard_record_write_failures_total") > failures
    assert list((tmp_path / "spool").glob("*.jsonl")) == []


def test_sqlite_locked_mid_load_then_released_keeps_every_record_exactly_once(tmp_path: Path) -> None:
    db = tmp_path / "guard.db"
    engine = make_engine(f"sqlite:///{db}", busy_timeout_s=0.05)
    upgrade(engine)
    writer = RecordWriter(engine, spool_dir=tmp_path / "spool", batch_size=100, retry_interval_s=0.05)
    writer.start_thread()
    blocker = sqlite3.connect(db, timeout=5, isolation_level=None)
    try:
        ids = _load(writer, 1000)
        blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock: every insert fails
        ids += _load(writer, 1000, start=1000)
        deadline = time.monotonic() + 10
        while not writer.spool.has_data() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert writer.spool.has_data()
        blocker.execute("COMMIT")
        ids += _load(writer, 500, start=2000)
        assert writer.flush(60)
    finally:
        writer.close()
        blocker.close()
    counts = _ids_once(engine)
    assert sorted(counts) == sorted(ids) and set(counts.values()) == {1}


def test_records_are_dropped_and_counted_only_when_queue_and_spool_are_full(engine: Engine, tmp_path: Path) -> None:
    writer = RecordWriter(engine, spool_dir=tmp_path / "spool", queue_size=5, spool_max_bytes=4096)
    dropped = _metric("guard_records_dropped_total")
    recs = [make_record(i) for i in range(40)]
    for rec in recs:  # writer not started: the queue fills, then the spool, then records drop
        writer.submit(rec)
    n_dropped = _metric("guard_records_dropped_total") - dropped
    assert 0 < n_dropped < 35
    spooled = sum(len(p.read_text().splitlines()) for p in writer.spool.segments())
    assert spooled > 0 and 5 + spooled + n_dropped == 40
    writer.start_thread()
    assert writer.flush(20)
    writer.close()
    assert count_records(engine) == 40 - n_dropped


def test_producers_never_wait_on_a_hanging_database(tmp_path: Path) -> None:
    # A server that accepts connections and never answers: the writer hangs in connect for 2 s.
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(16)
    port = blackhole.getsockname()[1]
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/test", connect_timeout_s=2)
    writer = RecordWriter(engine, spool_dir=tmp_path / "spool", retry_interval_s=30)
    writer.start_thread()
    t0 = time.monotonic()

    def produce(k: int) -> None:
        for i in range(500):
            writer.submit(make_record(k * 1000 + i))

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Every record was handed over while the writer was still stuck on its first connection attempt.
    assert writer.healthy and time.monotonic() - t0 < 2
    writer.close()
    blackhole.close()
    lines = sum(len(p.read_text().splitlines()) for p in writer.spool.segments())
    assert lines == 1000 and not writer.healthy
