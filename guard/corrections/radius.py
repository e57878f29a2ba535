"""How far a `false_positive` override reaches: never as far as a text known to be harmful.

One cosine threshold for every override (`GUARD_OVERRIDE_THRESHOLD`, 0.97, calibrated on chat prompts) was too
loose for a forum whose benign and hateful posts sit as close together as paraphrases (40 benign reviews let 6
points more of the forum's held-out hateful posts through), and too tight for a security team's requests, whose
held-out rephrasings mostly sit at 0.90-0.97 from a reviewed one. Harm is marked in two places:
- the tenant's reviewed harmful texts (`unsafe`, or `correct` on an exchange flagged for harm), and
- the classifier's harm atlas (`guard.triage.atlas`): the harmful rows it was trained and calibrated on.
A benign override's radius is just above its cosine to the nearest of those, so the harmful text and anything as
close are not overridden (for atlas texts up to `ATLAS_CEILING`: the reviewed text itself follows its review).
Where the atlas is known the radius may fall to `reach` (`GUARD_OVERRIDE_REACH`); without one it stays at the
global threshold or above. Overrides that assert harm keep the global threshold:
reaching too far with them blocks, it does not let through.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from guard.store.overrides import Override
from guard.taxonomy import ATTACKS, HARMFUL

MARGIN = 0.005  # above the nearest harmful review's cosine: float32 rounding and a reworded copy of it
# Above the nearest atlas text: the atlas's int8 rounding, another CPU's int8 kernels, and unseen harmful texts a
# little closer than any the classifier trained on (`scripts/override_reach.py` measures this on calib sources).
ATLAS_MARGIN = 0.03
# The atlas never narrows a benign override past this: the reviewer judged this very text, and a repeat of it or a
# trivial rewording ("hi, ..."; cosine 0.99+) follows the review even where a training row sits as close (a forum
# post beside a tweet labelled hateful: 9 of 40 reviewed posts were still blocked when asked again).
ATLAS_CEILING = 0.99
FLAGGED = 0.5  # a `correct` review confirms harm when the classifier scored a harm label at least this high


def asserts_harm(o: Override) -> bool:
    if o.label == "unsafe":
        return True
    return o.label == "correct" and any(o.scores.get(lab, 0.0) >= FLAGGED for lab in HARMFUL + ATTACKS)


def radii(
    vectors: np.ndarray,
    items: Sequence[Override],
    threshold: float,
    *,
    reach: float | None = None,
    atlas_near: np.ndarray | None = None,
    margin: float = MARGIN,
) -> np.ndarray:
    """Per-override cosine thresholds for one tenant's unit `vectors` (rows of `items`). `atlas_near`: each row's
    cosine to the nearest atlas text (None: no atlas); `reach`: the lowest radius a benign override may get then."""
    out = np.full(len(items), threshold, dtype=np.float32)
    benign = np.array([o.label == "false_positive" for o in items], dtype=bool)
    if not benign.any():
        return out
    rows = np.flatnonzero(benign)
    if atlas_near is not None and reach is not None:
        out[rows] = atlas_radii(atlas_near[rows], reach)
    harm = np.array([asserts_harm(o) for o in items], dtype=bool)
    if harm.any():
        harmful = vectors[harm].T
        # In blocks of benign rows: 5,000 of each kind at once would be a 100 MB similarity matrix per rebuild.
        for start in range(0, len(rows), _BLOCK):
            block = rows[start : start + _BLOCK]
            nearest_harm = (vectors[block] @ harmful).max(axis=1)
            out[block] = np.minimum(1.0, np.maximum(out[block], nearest_harm + margin))
    return out


def atlas_radii(atlas_near: np.ndarray, reach: float) -> np.ndarray:
    """Benign overrides' radii from their cosines to the nearest atlas text (before the tenant's harmful reviews)."""
    return np.minimum(ATLAS_CEILING, np.maximum(reach, atlas_near + ATLAS_MARGIN)).astype(np.float32)


_BLOCK = 512
