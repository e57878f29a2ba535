"""Saving a reviewer's verdict, shared by the JSON API and the review page."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from guard.errors import InvalidRequest, NotFound
from guard.store.db import insert_review
from guard.store.query import exchange_tenant
from guard.store.schema import REVIEW_LABELS


class ReviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str
    correction: str | None = Field(None, max_length=20_000)
    reviewer: str | None = Field(None, max_length=128)


def save_review(engine: Engine, exchange_id: str, review: ReviewRequest) -> None:
    if review.label not in REVIEW_LABELS:
        raise InvalidRequest(f"'label' must be one of {', '.join(REVIEW_LABELS)}", param="label")
    if exchange_tenant(engine, exchange_id) is None:
        raise NotFound(f"no exchange '{exchange_id}'")
    insert_review(engine, exchange_id, review.label, review.correction, review.reviewer)
