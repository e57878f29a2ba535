"""Reading records, reviews and feedback back (admin API, review page, retraining)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Select, and_, exists, func, select

from guard.records import ExchangeRecord
from guard.store.schema import exchange_flags, exchanges, feedback, reviews


@dataclass(frozen=True, slots=True)
class Review:
    exchange_id: str
    label: str
    correction: str | None
    reviewer: str | None
    created_at: datetime
    unsafe_label: str | None = None
    superseded: bool = False  # the same reviewer reviewed the exchange again later
    id: int = 0
    decision: str | None = None  # JSON: what the guard had decided (flags, triage labels, blocking rail)


@dataclass(frozen=True, slots=True)
class Feedback:
    exchange_id: str
    tenant: str
    rating: int
    comment: str | None
    created_at: datetime


def _flags_of_row() -> Any:
    return (
        select(func.aggregate_strings(exchange_flags.c.flag, ","))
        .where(exchange_flags.c.exchange_id == exchanges.c.exchange_id)
        .scalar_subquery()
    )


def _records_query(*, needs_review: bool | None = None, rail: str | None = None, **base: Any) -> Select:
    """`base`: the plain criteria of `_conditions` (since, until, flags, tenant, profile, model, reviewed, flagged)."""
    q = select(exchanges.c.record, _flags_of_row().label("flags"))
    conds = _conditions(**base)
    if needs_review is not None:
        # Never reviewed, or its current reviews disagree (two reviewers, two labels): back in the queue.
        todo = ~exists().where(reviews.c.exchange_id == exchanges.c.exchange_id) | (disputed_count() > 1)
        conds.append(todo if needs_review else ~todo)
    if rail is not None:  # a decision of this rail (records hold decisions as compact JSON)
        conds.append(exchanges.c.record.contains(f'"rail":{json.dumps(rail)}', autoescape=True))
    return q.where(*conds).order_by(exchanges.c.created_at, exchanges.c.exchange_id)


def disputed_count(exchange_id: Any = exchanges.c.exchange_id) -> Any:
    """Distinct labels among the exchange's current (not superseded) reviews: more than one is a dispute."""
    return (
        select(func.count(func.distinct(reviews.c.label)))
        .where(reviews.c.exchange_id == exchange_id, reviews.c.superseded_at.is_(None))
        .scalar_subquery()
    )


def _conditions(
    *,
    since: datetime | None,
    until: datetime | None,
    flags: set[str] | None,
    tenant: str | None,
    profile: str | None,
    model: str | None,
    reviewed: bool | None,
    flagged: bool | None,
) -> list[Any]:
    conds: list[Any] = []
    if since is not None:
        conds.append(exchanges.c.created_at >= since)
    if until is not None:
        conds.append(exchanges.c.created_at < until)
    if tenant is not None:
        conds.append(exchanges.c.tenant == tenant)
    if profile is not None:
        conds.append(exchanges.c.profile == profile)
    if model is not None:
        conds.append(exchanges.c.model == model)
    if flags:  # any of the given flags
        conds.append(
            exists().where(
                and_(exchange_flags.c.exchange_id == exchanges.c.exchange_id, exchange_flags.c.flag.in_(sorted(flags)))
            )
        )
    if flagged is not None:
        has_flag = exists().where(exchange_flags.c.exchange_id == exchanges.c.exchange_id)
        conds.append(has_flag if flagged else ~has_flag)
    if reviewed is not None:
        has_review = exists().where(reviews.c.exchange_id == exchanges.c.exchange_id)
        conds.append(has_review if reviewed else ~has_review)
    return conds


def _to_record(raw: str, flags: str | None) -> ExchangeRecord:
    rec = ExchangeRecord.model_validate_json(raw)
    # Flags come from their table: feedback can add `negative_feedback` after the record was written.
    rec.flags = sorted(set(flags.split(","))) if flags else []
    return rec


def iter_records(
    engine: Engine,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    flags: set[str] | None = None,
    tenant: str | None = None,
    profile: str | None = None,
    model: str | None = None,
    limit: int | None = None,
    reviewed: bool | None = None,
    flagged: bool | None = None,
    needs_review: bool | None = None,
    rail: str | None = None,
    chunk: int = 1000,
) -> Iterator[ExchangeRecord]:
    """Stream matching records (export) without holding them all in memory."""
    q = _records_query(
        since=since,
        until=until,
        flags=flags,
        tenant=tenant,
        profile=profile,
        model=model,
        reviewed=reviewed,
        flagged=flagged,
        needs_review=needs_review,
        rail=rail,
    )
    if limit is not None:
        q = q.limit(limit)
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=chunk).execute(q)
        for raw, flag_text in result:
            yield _to_record(raw, flag_text)


def fetch_records(
    engine: Engine, *, limit: int | None = None, offset: int = 0, **criteria: Any
) -> list[ExchangeRecord]:
    """Records ordered by created_at, exchange_id (the criteria of `iter_records`). `flags` matches exchanges
    carrying any of them."""
    q = _records_query(**_criteria(criteria))
    if limit is not None:
        q = q.limit(limit)
    if offset:
        q = q.offset(offset)
    with engine.connect() as conn:
        return [_to_record(raw, flag_text) for raw, flag_text in conn.execute(q)]


def count_matching(engine: Engine, **criteria: Any) -> int:
    """How many records match (the true total behind a page of `fetch_records`)."""
    inner = _records_query(**_criteria(criteria)).order_by(None).with_only_columns(exchanges.c.exchange_id)
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(inner.subquery())) or 0


_CRITERIA = ("since", "until", "flags", "tenant", "profile", "model", "reviewed", "flagged", "needs_review", "rail")


def _criteria(given: dict[str, Any]) -> dict[str, Any]:
    unknown = set(given) - set(_CRITERIA)
    if unknown:
        raise TypeError(f"unknown record criteria: {', '.join(sorted(unknown))}")
    return {name: given.get(name) for name in _CRITERIA}


def fetch_record(engine: Engine, exchange_id: str) -> ExchangeRecord | None:
    q = select(exchanges.c.record, _flags_of_row()).where(exchanges.c.exchange_id == exchange_id)
    with engine.connect() as conn:
        row = conn.execute(q).first()
    return _to_record(row[0], row[1]) if row else None


def exchange_tenant(engine: Engine, exchange_id: str) -> str | None:
    with engine.connect() as conn:
        return conn.scalar(select(exchanges.c.tenant).where(exchanges.c.exchange_id == exchange_id))


def fetch_reviews(engine: Engine, *, since: datetime | None = None, exchange_id: str | None = None) -> list[Review]:
    """All reviews (oldest first); the last one per exchange is its current label."""
    q = select(
        reviews.c.exchange_id,
        reviews.c.label,
        reviews.c.correction,
        reviews.c.reviewer,
        reviews.c.created_at,
        reviews.c.unsafe_label,
        reviews.c.superseded_at.is_not(None),
        reviews.c.id,
        reviews.c.decision,
    ).order_by(reviews.c.created_at, reviews.c.id)
    if since is not None:
        q = q.where(reviews.c.created_at >= since)
    if exchange_id is not None:
        q = q.where(reviews.c.exchange_id == exchange_id)
    with engine.connect() as conn:
        return [Review(*row) for row in conn.execute(q)]


def fetch_feedback(engine: Engine, *, since: datetime | None = None, exchange_id: str | None = None) -> list[Feedback]:
    q = select(
        feedback.c.exchange_id, feedback.c.tenant, feedback.c.rating, feedback.c.comment, feedback.c.created_at
    ).order_by(feedback.c.created_at, feedback.c.id)
    if since is not None:
        q = q.where(feedback.c.created_at >= since)
    if exchange_id is not None:
        q = q.where(feedback.c.exchange_id == exchange_id)
    with engine.connect() as conn:
        return [Feedback(*row) for row in conn.execute(q)]


def count_records(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(exchanges)) or 0
