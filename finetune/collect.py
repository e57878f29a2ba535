"""Step 1, collect: flagged exchange records since the model's watermark, plus reviewer labels and feedback.

The watermark is only advanced after a cycle finishes (`Watermark.commit`), so a crash mid-cycle re-reads the
same records next time instead of losing them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from guard.records import ExchangeRecord

# The flags that carry a training signal; the others (would_block, blocked_input) say nothing about the model.
SIGNAL_FLAGS = frozenset(
    {"over_refused", "unsafe_compliance", "blocked_output", "flagged_for_review", "negative_feedback", "model_refused"}
)


@dataclass
class Collected:
    records: dict[str, ExchangeRecord]  # exchange_id -> record (flagged, or referenced by a review/feedback)
    reviews: dict[str, Any]  # exchange_id -> latest Review
    feedback: dict[str, list[Any]]  # exchange_id -> Feedback rows
    since: datetime | None
    until: datetime
    counts: dict[str, int] = field(default_factory=dict)
    disputed: set[str] = field(default_factory=set)  # reviewers disagree: back in the queue, never trained on


class Watermark:
    """`STATE_DIR/<model>/watermark.json`: the end of the last fully processed window."""

    def __init__(self, state_dir: Path, model: str) -> None:
        self.path = Path(state_dir) / model / "watermark.json"

    def get(self) -> datetime | None:
        try:
            return datetime.fromisoformat(json.loads(self.path.read_text())["until"])
        except FileNotFoundError:
            return None

    def commit(self, until: datetime, **extra: object) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"until": until.isoformat(), **extra}, default=str))
        os.replace(tmp, self.path)


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def collect(
    engine: Any,
    *,
    since: datetime | None,
    until: datetime | None = None,
    model: str | None = None,
    review_lookback: timedelta = timedelta(days=30),
) -> Collected:
    """Read one window [since, until) of signal records, reviews and feedback through the storage API."""
    from guard.store.query import fetch_feedback, fetch_records, fetch_reviews

    until = _aware(until or datetime.now(UTC))
    since = _aware(since) if since else None
    in_window = fetch_records(engine, since=since, until=until, flags=set(SIGNAL_FLAGS), model=model)
    records = {r.exchange_id: r for r in in_window}  # windows are [since, until): contiguous, no overlap

    reviews: dict[str, Any] = {}
    current: dict[str, set[str]] = {}
    for rv in sorted(fetch_reviews(engine, since=since), key=lambda r: _aware(r.created_at)):
        if _aware(rv.created_at) < until:
            reviews[rv.exchange_id] = rv  # the latest label for an exchange wins
            if not rv.superseded:
                current.setdefault(rv.exchange_id, set()).add(rv.label)
    disputed = {ex_id for ex_id, labels in current.items() if len(labels) > 1}
    feedback: dict[str, list[Any]] = {}
    for fb in fetch_feedback(engine, since=since):
        if _aware(fb.created_at) < until:
            feedback.setdefault(fb.exchange_id, []).append(fb)

    # Reviews and feedback often arrive after the exchange's own window: look back for their records.
    missing = (set(reviews) | set(feedback)) - set(records)
    if missing:
        start = (since or until) - review_lookback if since else None
        for r in fetch_records(engine, since=start, until=until, model=model):
            if r.exchange_id in missing:
                records[r.exchange_id] = r
    counts = {
        "records": len(records),
        "reviews": len(reviews),
        "feedback": sum(map(len, feedback.values())),
        "disputed": len(disputed),
    }
    return Collected(records, reviews, feedback, since, until, counts, disputed)
