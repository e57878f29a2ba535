"""Instant corrections in the store: a review becomes an override of the classifier for close paraphrases of the
reviewed text, shared by every replica (they poll `override_marker` and reload on change).

An override is active until a reviewer revokes it, a later review of the same exchange supersedes it, or a
classifier version that gets the text right retires it (`retire_overrides`, for classifier adaptation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, select, update

from guard.records import ExchangeRecord
from guard.store.schema import overrides
from guard.taxonomy import INPUT_LABELS, REFUSAL

# Review labels that say what the classifier should have decided; `over_refusal` is the model's mistake.
OVERRIDING_LABELS = ("false_positive", "unsafe", "correct")


@dataclass(frozen=True, slots=True)
class Override:
    id: int
    review_id: int
    exchange_id: str
    tenant: str
    profile: str | None
    label: str
    unsafe_label: str | None
    text: str
    scores: dict[str, float]
    embedding: bytes | None
    embedding_version: str | None
    created_by: str | None
    created_at: datetime


_COLUMNS = (
    overrides.c.id,
    overrides.c.review_id,
    overrides.c.exchange_id,
    overrides.c.tenant,
    overrides.c.profile,
    overrides.c.label,
    overrides.c.unsafe_label,
    overrides.c.text,
    overrides.c.scores,
    overrides.c.embedding,
    overrides.c.embedding_version,
    overrides.c.created_by,
    overrides.c.created_at,
)
_ACTIVE = and_(overrides.c.revoked_at.is_(None), overrides.c.retired_at.is_(None))


def _row(row: Any) -> Override:
    values = list(row)
    values[8] = json.loads(values[8])
    return Override(*values)


def target_scores(record: ExchangeRecord, label: str, unsafe_label: str | None) -> dict[str, float] | None:
    """The label scores an override imposes, or None when the review says nothing about the classifier."""
    recorded = {k: v for k, v in record.triage_scores.items() if k != REFUSAL}
    if label == "false_positive":
        return dict.fromkeys(INPUT_LABELS, 0.0)
    if label == "unsafe" and unsafe_label:
        return {**recorded, unsafe_label: 1.0}
    if label == "correct" and recorded:
        return recorded
    return None


def reviewed_text(record: ExchangeRecord) -> str:
    """The text the classifier saw for this exchange (the same layout the triage stage builds)."""
    from guard.domain import Message
    from guard.triage.stage import conversation_text

    return conversation_text([Message(m.role, m.content) for m in record.messages])


def add_override(
    conn: Connection, review_id: int, record: ExchangeRecord, label: str, unsafe_label: str | None, by: str | None
) -> int | None:
    scores = target_scores(record, label, unsafe_label)
    text = reviewed_text(record)
    if scores is None or not text.strip():
        return None
    now = datetime.now(UTC)
    return conn.execute(
        overrides.insert()
        .values(
            review_id=review_id,
            exchange_id=record.exchange_id,
            tenant=record.tenant,
            profile=record.profile,
            label=label,
            unsafe_label=unsafe_label if label == "unsafe" else None,
            text=text,
            scores=json.dumps(scores, sort_keys=True),
            created_by=by,
            created_at=now,
            changed_at=now,
        )
        .returning(overrides.c.id)
    ).scalar_one()


def revoke_for_exchange(conn: Connection, exchange_id: str, by: str) -> int:
    """Revoke the exchange's active overrides (a new review supersedes them, or reviewers disagree)."""
    return _deactivate(conn, overrides.c.exchange_id == exchange_id, revoked_by=by)


def revoke_override(engine: Engine, override_id: int, by: str) -> bool:
    """Revoke one active override; False when there is none with that id (or it is already inactive)."""
    with engine.begin() as conn:
        return bool(_deactivate(conn, overrides.c.id == override_id, revoked_by=by))


def retire_overrides(engine: Engine, override_ids: list[int], version: str) -> int:
    """Retire overrides that classifier `version` now gets right on its own (classifier adaptation)."""
    if not override_ids:
        return 0
    with engine.begin() as conn:
        return _deactivate(conn, overrides.c.id.in_(override_ids), retired_by_version=version)


def restore_retired(engine: Engine, version: str) -> int:
    """Reactivate the overrides classifier `version` retired (it was rolled back: its fixes left with it)."""
    now = datetime.now(UTC)
    which = and_(overrides.c.retired_by_version == version, overrides.c.revoked_at.is_(None))
    stmt = update(overrides).where(which).values(retired_at=None, retired_by_version=None, changed_at=now)
    with engine.begin() as conn:
        return conn.execute(stmt).rowcount or 0


def _deactivate(conn: Connection, which: Any, **by: str) -> int:
    """Revoke (`revoked_by`) or retire (`retired_by_version`) the active overrides `which` selects."""
    now = datetime.now(UTC)
    stamp = "revoked_at" if "revoked_by" in by else "retired_at"
    stmt = update(overrides).where(which, _ACTIVE).values(**by, **{stamp: now}, changed_at=now)
    return conn.execute(stmt).rowcount or 0


def active_overrides(engine: Engine, *, tenant: str | None = None) -> list[Override]:
    q = select(*_COLUMNS).where(_ACTIVE).order_by(overrides.c.id)
    if tenant is not None:
        q = q.where(overrides.c.tenant == tenant)
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(q)]


def override_marker(engine: Engine) -> tuple[int, datetime | None]:
    """Changes whenever an override is added, revoked or retired: replicas reload when it moves."""
    with engine.connect() as conn:
        row = conn.execute(select(func.count(), func.max(overrides.c.changed_at))).one()
    changed = row[1]
    if isinstance(changed, datetime) and changed.tzinfo is None:
        changed = changed.replace(tzinfo=UTC)
    return int(row[0]), changed


def save_embeddings(engine: Engine, vectors: dict[int, bytes], version: str) -> None:
    """Cache embeddings computed by a replica so the others need not embed the same texts again. The row's
    `changed_at` does not move: a cached vector changes no override."""
    if not vectors:
        return
    with engine.begin() as conn:
        for override_id, blob in vectors.items():
            conn.execute(
                update(overrides).where(overrides.c.id == override_id).values(embedding=blob, embedding_version=version)
            )
