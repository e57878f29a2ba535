"""Exchanges, their flags, reviews and feedback.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "guard_exchanges",
        sa.Column("exchange_id", sa.String(64), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("profile", sa.String(128)),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("record", sa.Text, nullable=False),
    )
    op.create_index("ix_guard_exchanges_created", "guard_exchanges", ["created_at", "exchange_id"])
    op.create_index("ix_guard_exchanges_tenant_created", "guard_exchanges", ["tenant", "created_at"])
    op.create_index("ix_guard_exchanges_profile", "guard_exchanges", ["profile"])

    op.create_table(
        "guard_exchange_flags",
        sa.Column("exchange_id", sa.String(64), primary_key=True),
        sa.Column("flag", sa.String(64), primary_key=True),
    )
    op.create_index("ix_guard_exchange_flags_flag", "guard_exchange_flags", ["flag", "exchange_id"])

    op.create_table(
        "guard_reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("exchange_id", sa.String(64), nullable=False),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("correction", sa.Text),
        sa.Column("reviewer", sa.String(128)),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_index("ix_guard_reviews_exchange", "guard_reviews", ["exchange_id"])
    op.create_index("ix_guard_reviews_created", "guard_reviews", ["created_at"])

    op.create_table(
        "guard_feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("exchange_id", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("rating", sa.Integer, nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_index("ix_guard_feedback_exchange", "guard_feedback", ["exchange_id"])
    op.create_index("ix_guard_feedback_created", "guard_feedback", ["created_at"])


def downgrade() -> None:
    for table in ("guard_feedback", "guard_reviews", "guard_exchange_flags", "guard_exchanges"):
        op.drop_table(table)
