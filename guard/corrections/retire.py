"""Retiring overrides a classifier version no longer needs: it decides their reviewed texts as the reviews say.

For classifier adaptation (`guard triage adapt`): after a new version is promoted, `retire_settled` retires every
active override whose text the new version labels exactly as the override would, so the memory keeps only the
corrections the classifier has not learnt.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from guard.store.overrides import Override, active_overrides, retire_overrides
from guard.taxonomy import labels_over


def imposed_labels(override: Override, thresholds: dict[str, float]) -> set[str]:
    """The labels over threshold once the override's scores are applied."""
    return set(labels_over(override.scores, thresholds, override.scores))


def settled(overrides: list[Override], model: Any) -> list[int]:
    """Ids of the overrides whose texts `model` (a `TriageModel`) already labels as the overrides impose."""
    if not overrides:
        return []
    results = model.predict([o.text for o in overrides])
    return [
        o.id for o, r in zip(overrides, results, strict=True) if set(r.labels) == imposed_labels(o, model.thresholds)
    ]


def retire_settled(engine: Engine, model: Any) -> int:
    """Retire the active overrides `model` gets right on its own; returns how many."""
    return retire_overrides(engine, settled(active_overrides(engine), model), model.version)
