"""Saving a reviewer's verdict, shared by the JSON API and the review page."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from guard.errors import InvalidRequest, NotFound
from guard.store.db import ReviewOutcome, insert_review
from guard.store.query import exchange_tenant
from guard.store.schema import REVIEW_LABELS
from guard.taxonomy import INPUT_LABELS


class ReviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str
    unsafe_label: str | None = Field(None, description="with label 'unsafe': the triage label it should have had")
    correction: str | None = Field(None, max_length=20_000)


def check_review(review: ReviewRequest) -> None:
    if review.label not in REVIEW_LABELS:
        raise InvalidRequest(f"'label' must be one of {', '.join(REVIEW_LABELS)}", param="label")
    if review.label == "unsafe" and review.unsafe_label not in INPUT_LABELS:
        raise InvalidRequest(
            f"label 'unsafe' needs 'unsafe_label', the triage label the request should have had: one of "
            f"{', '.join(INPUT_LABELS)}",
            param="unsafe_label",
        )


def save_review(engine: Engine, exchange_id: str, review: ReviewRequest, reviewer: str) -> ReviewOutcome:
    check_review(review)
    if exchange_tenant(engine, exchange_id) is None:
        raise NotFound(f"no exchange '{exchange_id}'")
    return insert_review(
        engine,
        exchange_id,
        review.label,
        review.correction,
        reviewer,
        unsafe_label=review.unsafe_label if review.label == "unsafe" else None,
    )


async def apply_now(request_state: Any) -> None:
    """Reload this replica's overrides at once, so the reviewer's next request already sees the change (the other
    replicas poll the store)."""
    memory = getattr(getattr(request_state, "resources", None), "corrections", None)
    if memory is not None:
        await memory.refresh()
