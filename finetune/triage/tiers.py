"""Where held-out benign traffic lands under a rails profile's label tiers: refuse, caution, allow.

Label rules only (patterns, PII and NeMo flows are not the classifier's doing): the share of ordinary prompts
that the classifier alone sends to the refuse or caution tiers, per source.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from guard.pipeline import TriageResult
from rails.compiled import fire_labels
from rails.engine import RailsEngine

TIERS = ("refuse", "caution", "allow")


def tier_of(actions: set[str]) -> str:
    if actions & {"refuse", "block"}:
        return "refuse"
    return "caution" if actions & {"safe_complete", "disclaim"} else "allow"


def tier_shares(
    rows: list[dict],
    probs: np.ndarray,
    labels: tuple[str, ...],
    thresholds: dict[str, float],
    rails_dir: Path,
    profile: str | None = None,
) -> dict:
    """Per benign source: the share of its prompts in each tier of `profile` (default: the config's default)."""
    engine = RailsEngine.load(rails_dir)
    prof = engine.profiles[profile or engine.default_profile]
    counts: dict[str, dict[str, int]] = {}
    for i, r in enumerate(rows):
        if r["labels"] or r.get("kind", "prompt") != "prompt":
            continue
        scores = {lab: float(probs[i, j]) for j, lab in enumerate(labels)}
        over = tuple(lab for lab in labels if scores[lab] >= thresholds[lab])
        fired = fire_labels(prof.input_labels, TriageResult(scores=scores, labels=over, thresholds=thresholds))
        tier = tier_of({fire.action for fire, _ in fired})
        d = counts.setdefault(r["source"], dict.fromkeys(TIERS, 0))
        d[tier] += 1
    return {
        "profile": prof.name,
        "rails_dir": str(rails_dir),
        "per_source": {
            s: {t: round(n / sum(d.values()), 4) for t, n in d.items()} | {"rows": sum(d.values())}
            for s, d in sorted(counts.items())
        },
    }
