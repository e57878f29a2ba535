"""Engine, migrations and the write operations. Every insert is idempotent on the exchange id."""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import Connection, Engine, create_engine, delete, event, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from guard.records import ExchangeRecord
from guard.store.overrides import OVERRIDING_LABELS, add_override, revoke_for_exchange
from guard.store.query import disputed_count
from guard.store.schema import REVIEW_LABELS, exchange_flags, exchanges, feedback, reviews

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
NEGATIVE_FEEDBACK = "negative_feedback"


def make_engine(
    url: str,
    *,
    busy_timeout_s: float = 5.0,
    connect_timeout_s: float = 5,
    statement_timeout_s: float | None = None,
    lock_timeout_s: float | None = None,
) -> Engine:
    """SQLite: WAL, busy timeout, parent directory created. Postgres (psycopg 3): bounded connect time and,
    when given, server-side statement and lock timeouts (a live server stops a stuck statement itself; a hung
    one is the caller's deadline to enforce, see `interrupt`)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": busy_timeout_s})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes; WAL keeps it consistent
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            cur.close()

        return _tracked(engine)
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        # libpq takes whole seconds, at least 2.
        connect_args["connect_timeout"] = max(2, math.ceil(connect_timeout_s))
        given = parsed.query.get("options")
        options: list[str] = [given] if isinstance(given, str) else list(given or ())
        if statement_timeout_s is not None:
            options.append(f"-c statement_timeout={int(statement_timeout_s * 1000)}")
        if lock_timeout_s is not None:
            options.append(f"-c lock_timeout={int(lock_timeout_s * 1000)}")
        if options:
            connect_args["options"] = " ".join(options)
    return _tracked(create_engine(url, pool_pre_ping=True, connect_args=connect_args))


# Every DBAPI connection an engine opened, so that `interrupt` can reach the one a stuck thread is blocked on.
_LIVE: weakref.WeakKeyDictionary[Engine, weakref.WeakSet[Any]] = weakref.WeakKeyDictionary()


def _tracked(engine: Engine) -> Engine:
    live: weakref.WeakSet[Any] = weakref.WeakSet()
    _LIVE[engine] = live
    # The pool's records, not the DBAPI connections: sqlite3's cannot be weakly referenced.
    event.listen(engine, "connect", lambda _dbapi_conn, record: live.add(record))
    return engine


def interrupt(engine: Engine) -> int:
    """Break every open connection of `engine` from another thread: a thread blocked on a hung database (no
    answer, not even an error) gets an error instead. Postgres: the socket is shut down (the server may not
    answer a cancel request either); SQLite: the running statement is interrupted. Returns how many."""
    done = 0
    for record in list(_LIVE.get(engine, ())):
        conn = record.dbapi_connection
        if conn is None:
            continue
        with contextlib.suppress(Exception):  # already closed: nothing to break
            pgconn = getattr(conn, "pgconn", None)
            if pgconn is not None:
                with socket.socket(fileno=os.dup(pgconn.socket)) as sock:
                    sock.shutdown(socket.SHUT_RDWR)
            elif hasattr(conn, "interrupt"):
                conn.interrupt()
            done += 1
    return done


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def upgrade(engine_or_url: Engine | str) -> None:
    """Bring the schema to the newest migration (no-op when already there)."""
    from alembic import command

    engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    try:
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), "head")
    except sqlalchemy.exc.DBAPIError:
        # Another process may have migrated at the same moment (SQLite has no advisory lock); that is fine.
        if current_revision(engine) != head_revision():
            raise
    finally:
        if isinstance(engine_or_url, str):
            engine.dispose()


def _insert(conn: Connection, table: sqlalchemy.Table) -> Any:
    name = conn.dialect.name
    if name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise NotImplementedError(f"unsupported database dialect: {name}")


def insert_records(engine: Engine, records: list[ExchangeRecord]) -> int:
    """Insert in one transaction; records already present are skipped. Returns how many were new."""
    return len(insert_new_records(engine, records))


def insert_new_records(engine: Engine, records: list[ExchangeRecord]) -> set[str]:
    """Like `insert_records`, returning the ids that were not stored before (replays count nothing twice)."""
    if not records:
        return set()
    rows = [
        {
            "exchange_id": r.exchange_id,
            "tenant": r.tenant,
            "profile": r.profile,
            "model": r.model,
            "created_at": r.created_at.astimezone(UTC),
            "record": r.model_dump_json(),
        }
        for r in records
    ]
    flag_rows = [{"exchange_id": r.exchange_id, "flag": f} for r in records for f in r.flags]
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            return _insert_pg(conn, rows, flag_rows)
        if conn.dialect.name == "sqlite":
            return _insert_sqlite(conn, rows, flag_rows)
        new = conn.execute(_insert(conn, exchanges).returning(exchanges.c.exchange_id), rows).all()
        if flag_rows:
            conn.execute(_insert(conn, exchange_flags), flag_rows)
    return {row[0] for row in new}


# SQLite: the driver's own executemany (a C loop) instead of a VALUES list bound row by row in Python; this
# runs in the writer thread, and every microsecond it holds the GIL is taken from the event loop.
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy's SQLite DateTime (via UTCDateTime) stores UTC
_SQLITE_EXCHANGES = (
    "INSERT INTO guard_exchanges (exchange_id, tenant, profile, model, created_at, record) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
_SQLITE_FLAGS = "INSERT INTO guard_exchange_flags (exchange_id, flag) VALUES (?, ?) ON CONFLICT DO NOTHING"


def _insert_sqlite(conn: Connection, rows: list[dict[str, Any]], flag_rows: list[dict[str, str]]) -> set[str]:
    ids = [r["exchange_id"] for r in rows]
    existing: set[str] = set()
    for i in range(0, len(ids), 500):  # stay under SQLite's bound-variable limit
        chunk = tuple(ids[i : i + 500])
        marks = ",".join("?" * len(chunk))
        existing.update(
            row[0]
            for row in conn.exec_driver_sql(
                f"SELECT exchange_id FROM guard_exchanges WHERE exchange_id IN ({marks})", chunk
            )
        )
    conn.exec_driver_sql(
        _SQLITE_EXCHANGES,
        [
            (
                r["exchange_id"],
                r["tenant"],
                r["profile"],
                r["model"],
                r["created_at"].strftime(_SQLITE_TIME),
                r["record"],
            )
            for r in rows
        ],
    )
    if flag_rows:
        conn.exec_driver_sql(_SQLITE_FLAGS, [(f["exchange_id"], f["flag"]) for f in flag_rows])
    # Another process inserting the same id between the SELECT and the INSERT (two writers replaying one
    # segment) would make both count it as new: only the metric could be off, never the stored data.
    return set(ids) - existing


# Postgres: one statement per table whatever the batch size (arrays + unnest, sent in binary so the JSON
# texts need no array escaping): several times faster than a multi-row VALUES statement bound row by row.
_PG_EXCHANGES = (
    "INSERT INTO guard_exchanges (exchange_id, tenant, profile, model, created_at, record) "
    "SELECT * FROM unnest(%(ids)b::varchar[], %(tenants)b::varchar[], %(profiles)b::varchar[], "
    "%(models)b::varchar[], %(created)b::timestamptz[], %(records)b::text[]) "
    "ON CONFLICT (exchange_id) DO NOTHING RETURNING exchange_id"
)
_PG_FLAGS = (
    "INSERT INTO guard_exchange_flags (exchange_id, flag) "
    "SELECT * FROM unnest(%(ids)b::varchar[], %(flags)b::varchar[]) ON CONFLICT DO NOTHING"
)


def _insert_pg(conn: Connection, rows: list[dict[str, Any]], flag_rows: list[dict[str, str]]) -> set[str]:
    def col(name: str, source: list[dict[str, Any]]) -> list[Any]:
        return [r[name] for r in source]

    new = (
        conn.exec_driver_sql(
            _PG_EXCHANGES,
            {
                "ids": col("exchange_id", rows),
                "tenants": col("tenant", rows),
                "profiles": col("profile", rows),
                "models": col("model", rows),
                "created": col("created_at", rows),
                "records": col("record", rows),
            },
        )
        .scalars()
        .all()
    )
    if flag_rows:
        conn.exec_driver_sql(_PG_FLAGS, {"ids": col("exchange_id", flag_rows), "flags": col("flag", flag_rows)})
    return set(new)


@dataclass(frozen=True, slots=True)
class ReviewOutcome:
    review_id: int
    override_id: int | None  # the instant correction the review created, if any
    disputed: bool  # current reviews of the exchange disagree: back in the queue, no override, no training


def insert_review(
    engine: Engine,
    exchange_id: str,
    label: str,
    correction: str | None = None,
    reviewer: str | None = None,
    *,
    unsafe_label: str | None = None,
) -> ReviewOutcome:
    """Append a review: it supersedes the same reviewer's earlier ones, stores the decision it overrides, and
    (when the exchange is stored and reviewers agree) replaces the exchange's override with its own."""
    if label not in REVIEW_LABELS:
        raise ValueError(f"label must be one of {', '.join(REVIEW_LABELS)}")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        record = _stored_record(conn, exchange_id)
        mine = reviews.c.reviewer.is_(None) if reviewer is None else reviews.c.reviewer == reviewer
        conn.execute(
            update(reviews)
            .where(reviews.c.exchange_id == exchange_id, reviews.c.superseded_at.is_(None), mine)
            .values(superseded_at=now)
        )
        review_id = conn.execute(
            reviews.insert()
            .values(
                exchange_id=exchange_id,
                label=label,
                correction=correction or None,
                reviewer=reviewer,
                created_at=now,
                decision=json.dumps(reviewed_decision(record)) if record is not None else None,
                unsafe_label=unsafe_label if label == "unsafe" else None,
            )
            .returning(reviews.c.id)
        ).scalar_one()
        disputed = _disputed(conn, exchange_id)
        why = "reviewers disagree" if disputed else f"superseded by review {review_id}"
        revoke_for_exchange(conn, exchange_id, why)
        override_id = None
        if record is not None and not disputed and label in OVERRIDING_LABELS:
            override_id = add_override(conn, review_id, record, label, unsafe_label, reviewer)
    return ReviewOutcome(review_id, override_id, disputed)


def _stored_record(conn: Connection, exchange_id: str) -> ExchangeRecord | None:
    raw = conn.scalar(select(exchanges.c.record).where(exchanges.c.exchange_id == exchange_id))
    return ExchangeRecord.model_validate_json(raw) if raw is not None else None


def _disputed(conn: Connection, exchange_id: str) -> bool:
    return (conn.scalar(select(disputed_count(exchange_id))) or 0) > 1


def reviewed_decision(record: ExchangeRecord) -> dict[str, Any]:
    """What the reviewer saw the guard decide, stored with the review."""
    blocked = next((d.rail for d in record.decisions if d.result == "block" and d.mode == "enforce"), None)
    return {
        "flags": record.flags,
        "triage_labels": record.triage_labels,
        "blocked_by": blocked,
        "override": record.override.model_dump() if record.override else None,
    }


def insert_feedback(engine: Engine, exchange_id: str, tenant: str, rating: int, comment: str | None = None) -> None:
    """Store a rating (negative = bad answer); a negative one flags the exchange `negative_feedback`."""
    with engine.begin() as conn:
        conn.execute(
            feedback.insert().values(
                exchange_id=exchange_id,
                tenant=tenant,
                rating=int(rating),
                comment=comment,
                created_at=datetime.now(UTC),
            )
        )
        if rating < 0:
            conn.execute(_insert(conn, exchange_flags), [{"exchange_id": exchange_id, "flag": NEGATIVE_FEEDBACK}])


def prune(engine: Engine, older_than: timedelta) -> int:
    """Delete exchanges created before now - older_than, with their flags, reviews and feedback. Overrides stay:
    they carry their own text, and a correction does not lapse with the records' retention."""
    cutoff = datetime.now(UTC) - older_than
    old = select(exchanges.c.exchange_id).where(exchanges.c.created_at < cutoff)
    with engine.begin() as conn:
        for table in (exchange_flags, reviews, feedback):
            conn.execute(delete(table).where(table.c.exchange_id.in_(old)))
        return conn.execute(delete(exchanges).where(exchanges.c.created_at < cutoff)).rowcount or 0


def ping(engine: Engine) -> None:
    """Raise if the database cannot be reached."""
    with engine.connect() as conn:
        conn.execute(select(1))
