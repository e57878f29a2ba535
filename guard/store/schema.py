"""Table definitions the queries use. The migrations in `migrations/versions` create the same tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, Index, Integer, LargeBinary, MetaData, String, Table, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps go in as UTC and come out timezone-aware, on SQLite (which stores naive text) too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

exchanges = Table(
    "guard_exchanges",
    metadata,
    Column("exchange_id", String(64), primary_key=True),
    Column("tenant", String(128), nullable=False),
    Column("profile", String(128)),
    Column("model", String(256), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("record", Text, nullable=False),  # the ExchangeRecord as JSON; flags live in guard_exchange_flags
    Index("ix_guard_exchanges_created", "created_at", "exchange_id"),
    Index("ix_guard_exchanges_tenant_created", "tenant", "created_at"),
    Index("ix_guard_exchanges_profile", "profile"),
)

# One row per (exchange, flag). No foreign key on purpose: feedback may flag an exchange whose record is
# still in a writer's queue; the flag joins the record when it lands.
exchange_flags = Table(
    "guard_exchange_flags",
    metadata,
    Column("exchange_id", String(64), primary_key=True),
    Column("flag", String(64), primary_key=True),
    Index("ix_guard_exchange_flags_flag", "flag", "exchange_id"),
)

reviews = Table(
    "guard_reviews",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("exchange_id", String(64), nullable=False),
    Column("label", String(32), nullable=False),
    Column("correction", Text),
    Column("reviewer", String(128)),
    Column("created_at", UTCDateTime(), nullable=False),
    # What the reviewer saw and overrides: the exchange's flags, triage labels and blocking rail, as JSON.
    Column("decision", Text),
    Column("unsafe_label", String(64)),  # the triage label a reviewer picked for an `unsafe` verdict
    Column("superseded_at", UTCDateTime()),  # the same reviewer reviewed the exchange again
    Index("ix_guard_reviews_exchange", "exchange_id"),
    Index("ix_guard_reviews_created", "created_at"),
)

feedback = Table(
    "guard_feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("exchange_id", String(64), nullable=False),
    Column("tenant", String(128), nullable=False),
    Column("rating", Integer, nullable=False),
    Column("comment", Text),
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_guard_feedback_exchange", "exchange_id"),
    Index("ix_guard_feedback_created", "created_at"),
)

# Instant corrections: a reviewed text that overrides the classifier for close paraphrases of it, per tenant.
# `scores` replace the classifier's label scores on a match; `embedding` is cached per triage version (a
# retrained classifier re-embeds `text`). Revoked by a reviewer, or retired once a classifier version gets it right.
overrides = Table(
    "guard_overrides",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("review_id", Integer, nullable=False),
    Column("exchange_id", String(64), nullable=False),
    Column("tenant", String(128), nullable=False),
    Column("profile", String(128)),
    Column("label", String(32), nullable=False),
    Column("unsafe_label", String(64)),
    Column("text", Text, nullable=False),
    Column("scores", Text, nullable=False),
    Column("embedding", LargeBinary),
    Column("embedding_version", String(128)),
    Column("created_by", String(128)),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("changed_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime()),
    Column("revoked_by", String(128)),
    Column("retired_at", UTCDateTime()),
    Column("retired_by_version", String(128)),
    Index("ix_guard_overrides_changed", "changed_at"),
    Index("ix_guard_overrides_exchange", "exchange_id"),
)

REVIEW_LABELS = ("correct", "false_positive", "over_refusal", "unsafe")
