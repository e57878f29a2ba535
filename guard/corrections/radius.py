"""How far a `false_positive` override reaches: never as far as a text its tenant's reviewers confirmed harmful.

One cosine threshold for every override (`GUARD_OVERRIDE_THRESHOLD`, 0.97, calibrated on chat prompts) was too
loose for a forum whose benign and hateful posts sit as close together as paraphrases: 40 benign reviews let 6
points more of the forum's held-out hateful posts through. A reviewed harmful text of the same tenant (`unsafe`,
or `correct` on an exchange flagged for harm) marks where harm lies in that traffic, so a benign override's radius
is raised to just above its cosine to the nearest one: the harmful text and anything as close are not overridden.
Overrides that assert harm keep the global threshold: reaching too far with them blocks, it does not let through.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from guard.store.overrides import Override
from guard.taxonomy import ATTACKS, HARMFUL

MARGIN = 0.005  # above the nearest harmful review's cosine: float32 rounding and a reworded copy of it
FLAGGED = 0.5  # a `correct` review confirms harm when the classifier scored a harm label at least this high


def asserts_harm(o: Override) -> bool:
    if o.label == "unsafe":
        return True
    return o.label == "correct" and any(o.scores.get(lab, 0.0) >= FLAGGED for lab in HARMFUL + ATTACKS)


def radii(vectors: np.ndarray, items: Sequence[Override], threshold: float, margin: float = MARGIN) -> np.ndarray:
    """Per-override cosine thresholds for one tenant's unit `vectors` (rows of `items`), each >= `threshold`."""
    out = np.full(len(items), threshold, dtype=np.float32)
    harm = np.array([asserts_harm(o) for o in items])
    benign = np.array([o.label == "false_positive" for o in items])
    if harm.any() and benign.any():
        harmful = vectors[harm].T
        rows = np.flatnonzero(benign)
        # In blocks of benign rows: 5,000 of each kind at once would be a 100 MB similarity matrix per rebuild.
        for start in range(0, len(rows), _BLOCK):
            block = rows[start : start + _BLOCK]
            nearest_harm = (vectors[block] @ harmful).max(axis=1)
            out[block] = np.minimum(1.0, np.maximum(threshold, nearest_harm + margin))
    return out


_BLOCK = 512
