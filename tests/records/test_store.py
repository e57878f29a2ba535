"""Storage on real SQLite and real Postgres: migrations, idempotent inserts, queries, reviews, feedback, retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from records_support import make_record
from sqlalchemy import Engine, inspect

from guard.store.db import (
    current_revision,
    head_revision,
    insert_feedback,
    insert_records,
    insert_review,
    make_engine,
    prune,
    upgrade,
)
from guard.store.query import count_records, fetch_feedback, fetch_record, fetch_records, fetch_reviews


def test_migrations_create_every_table_from_an_empty_database_and_rerun_as_a_no_op(db_url: str) -> None:
    eng = make_engine(db_url)
    assert current_revision(eng) is None
    upgrade(eng)
    upgrade(db_url)  # by URL, and a second time: nothing to do
    assert current_revision(eng) == head_revision() is not None
    tables = set(inspect(eng).get_table_names())
    assert {"guard_exchanges", "guard_exchange_flags", "guard_reviews", "guard_feedback"} <= tables
    eng.dispose()


def test_sqlite_engine_uses_wal_and_creates_the_parent_directory(tmp_path) -> None:
    path = tmp_path / "deep" / "er" / "guard.db"
    eng = make_engine(f"sqlite:///{path}")
    with eng.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert path.parent.is_dir()
    eng.dispose()


def test_inserting_the_same_records_twice_stores_each_once(engine: Engine) -> None:
    recs = [make_record(i, flags=("blocked_input",) if i % 2 else ()) for i in range(50)]
    assert insert_records(engine, recs) == 50
    assert insert_records(engine, [*recs[:10], make_record(99)]) == 1
    assert count_records(engine) == 51
    assert insert_records(engine, []) == 0


def test_records_round_trip_with_timezone_aware_timestamps_in_order(engine: Engine) -> None:
    recs = [make_record(i) for i in (3, 1, 2)]
    insert_records(engine, recs)
    got = fetch_records(engine)
    assert [r.exchange_id for r in got] == [r.exchange_id for r in sorted(recs, key=lambda r: r.created_at)]
    assert got[0].created_at.tzinfo is not None
    original = next(r for r in recs if r.exchange_id == got[0].exchange_id)
    assert got[0].model_dump() == original.model_dump()


def test_fetch_records_filters_by_flag_time_tenant_profile_and_limit(engine: Engine) -> None:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    recs = [
        make_record(0, tenant="a", flags=("blocked_input",), profile="kids", created_at=t0),
        make_record(1, tenant="a", flags=("over_refused", "model_refused"), created_at=t0 + timedelta(hours=1)),
        make_record(2, tenant="b", flags=("blocked_input",), created_at=t0 + timedelta(hours=2)),
        make_record(3, tenant="b", created_at=t0 + timedelta(hours=3)),
    ]
    insert_records(engine, recs)
    ids = [r.exchange_id for r in recs]

    def got(**kw: object) -> list[str]:
        return [r.exchange_id for r in fetch_records(engine, **kw)]

    assert got(flags={"blocked_input"}) == [ids[0], ids[2]]
    assert got(flags={"blocked_input", "over_refused"}) == ids[:3]
    assert got(tenant="b") == ids[2:]
    assert got(profile="kids") == [ids[0]]
    assert got(since=t0 + timedelta(minutes=30), until=t0 + timedelta(hours=2)) == [ids[1]]
    assert got(flagged=False) == [ids[3]]
    assert got(limit=2) == ids[:2]
    assert got(model="other") == []


def test_reviews_are_kept_in_order_and_mark_the_exchange_reviewed(engine: Engine) -> None:
    recs = [make_record(i, flags=("blocked_input",)) for i in range(3)]
    insert_records(engine, recs)
    insert_review(engine, recs[0].exchange_id, "false_positive", correction="Sure, here is how.", reviewer="ann")
    insert_review(engine, recs[0].exchange_id, "over_refusal")
    with pytest.raises(ValueError, match="label must be one of"):
        insert_review(engine, recs[1].exchange_id, "meh")
    reviews = fetch_reviews(engine)
    assert [(r.label, r.correction, r.reviewer) for r in reviews] == [
        ("false_positive", "Sure, here is how.", "ann"),
        ("over_refusal", None, None),
    ]
    assert reviews[0].created_at.tzinfo is not None
    assert [r.exchange_id for r in fetch_records(engine, reviewed=False)] == [recs[1].exchange_id, recs[2].exchange_id]
    assert fetch_reviews(engine, since=datetime.now(UTC) + timedelta(minutes=1)) == []


def test_negative_feedback_flags_the_exchange_and_positive_does_not(engine: Engine) -> None:
    good, bad = make_record(1), make_record(2)
    insert_records(engine, [good, bad])
    insert_feedback(engine, good.exchange_id, "acme", 1, "thanks")
    insert_feedback(engine, bad.exchange_id, "acme", -1, "wrong")
    insert_feedback(engine, bad.exchange_id, "acme", -1)  # twice: still one flag
    assert fetch_record(engine, bad.exchange_id).flags == ["negative_feedback"]
    assert fetch_record(engine, good.exchange_id).flags == []
    assert [r.exchange_id for r in fetch_records(engine, flags={"negative_feedback"})] == [bad.exchange_id]
    fb = fetch_feedback(engine)
    assert [(f.exchange_id, f.rating, f.comment) for f in fb] == [
        (good.exchange_id, 1, "thanks"),
        (bad.exchange_id, -1, "wrong"),
        (bad.exchange_id, -1, None),
    ]


def test_feedback_flag_arriving_before_its_record_joins_it_when_the_record_lands(engine: Engine) -> None:
    rec = make_record(5)
    insert_feedback(engine, rec.exchange_id, "acme", -1)
    insert_records(engine, [rec])
    assert fetch_record(engine, rec.exchange_id).flags == ["negative_feedback"]


def test_prune_deletes_old_exchanges_with_their_flags_reviews_and_feedback(engine: Engine) -> None:
    now = datetime.now(UTC)
    old = make_record(1, flags=("blocked_input",), created_at=now - timedelta(days=40))
    new = make_record(2, flags=("blocked_input",), created_at=now - timedelta(days=1))
    insert_records(engine, [old, new])
    for rec in (old, new):
        insert_review(engine, rec.exchange_id, "correct")
        insert_feedback(engine, rec.exchange_id, "acme", -1)
    assert prune(engine, timedelta(days=30)) == 1
    assert [r.exchange_id for r in fetch_records(engine)] == [new.exchange_id]
    assert [r.exchange_id for r in fetch_reviews(engine)] == [new.exchange_id]
    assert [f.exchange_id for f in fetch_feedback(engine)] == [new.exchange_id]
