"""Instant corrections (guard_overrides); reviews keep the decision they override and the unsafe label.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("guard_reviews") as batch:
        batch.add_column(sa.Column("decision", sa.Text))
        batch.add_column(sa.Column("unsafe_label", sa.String(64)))
        batch.add_column(sa.Column("superseded_at", _TS))
    op.create_table(
        "guard_overrides",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("review_id", sa.Integer, nullable=False),
        sa.Column("exchange_id", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("profile", sa.String(128)),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("unsafe_label", sa.String(64)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("scores", sa.Text, nullable=False),
        sa.Column("embedding", sa.LargeBinary),
        sa.Column("embedding_version", sa.String(128)),
        sa.Column("created_by", sa.String(128)),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("changed_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS),
        sa.Column("revoked_by", sa.String(128)),
        sa.Column("retired_at", _TS),
        sa.Column("retired_by_version", sa.String(128)),
    )
    op.create_index("ix_guard_overrides_changed", "guard_overrides", ["changed_at"])
    op.create_index("ix_guard_overrides_exchange", "guard_overrides", ["exchange_id"])


def downgrade() -> None:
    op.drop_table("guard_overrides")
    with op.batch_alter_table("guard_reviews") as batch:
        batch.drop_column("superseded_at")
        batch.drop_column("unsafe_label")
        batch.drop_column("decision")
