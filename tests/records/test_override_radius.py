"""A benign override reaches no text as close to it as a harmful text: one its tenant's reviewers confirmed, or one
of the classifier's harm atlas; with an atlas it may reach further than the global threshold."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from guard.corrections.index import OverrideIndex
from guard.corrections.radius import ATLAS_CEILING, ATLAS_MARGIN, MARGIN, radii
from guard.store.overrides import Override

DIM = 8


def _unit(cos: float, axis: int) -> np.ndarray:
    """A unit vector at cosine `cos` from e0, leaning towards e_axis."""
    v = np.zeros(DIM, np.float32)
    v[0], v[axis] = cos, np.sqrt(1 - cos**2)
    return v


def _override(i: int, label: str, scores: dict[str, float] | None = None) -> Override:
    return Override(
        i, i, f"x{i}", "acme", None, label, None, f"text {i}", scores or {}, None, None, "ann", datetime.now(UTC)
    )


def test_a_benign_override_stops_short_of_its_tenants_reviewed_harmful_text() -> None:
    benign, harmful = _unit(1.0, 1), _unit(0.98, 1)  # a confirmed harmful post at cosine 0.98 from a benign one
    vectors = np.stack([benign, harmful])
    items = [_override(0, "false_positive"), _override(1, "correct", {"hate_harassment": 0.93})]
    r = radii(vectors, items, threshold=0.97)
    assert r[0] == np.float32(0.98 + MARGIN) and r[1] == np.float32(0.97)
    index = OverrideIndex(vectors, 0.97, r)
    # As close to the benign review as the harmful one is, on another side: the global 0.97 would override it.
    assert index.nearest(_unit(0.98, 2)) is None
    assert OverrideIndex(vectors, 0.97).nearest(_unit(0.98, 2)) == (0, np.float32(0.98))
    row, sim = index.nearest(_unit(0.995, 2)) or (-1, 0.0)  # a close paraphrase of the benign review still matches
    assert row == 0 and sim > 0.99


def test_without_confirmed_harm_every_override_keeps_the_global_threshold() -> None:
    vectors = np.stack([_unit(1.0, 1), _unit(0.98, 1), _unit(0.99, 2)])
    # `correct` on an exchange the classifier did not flag, and `false_positive`s: no evidence of harm nearby.
    items = [
        _override(0, "false_positive"),
        _override(1, "correct", {"hate_harassment": 0.1}),
        _override(2, "false_positive"),
    ]
    assert radii(vectors, items, threshold=0.97).tolist() == [np.float32(0.97)] * 3


def test_with_a_harm_atlas_a_benign_override_reaches_to_the_reach_and_stops_short_of_the_nearest_harmful_text() -> None:
    vectors = np.stack([_unit(1.0, 1), _unit(1.0, 2)])
    items = [_override(0, "false_positive"), _override(1, "false_positive")]
    # The first review's nearest atlas text is far (0.5): it reaches to 0.91. The second's is at 0.93.
    r = radii(vectors, items, threshold=0.97, reach=0.91, atlas_near=np.array([0.5, 0.93], np.float32))
    assert r[0] == np.float32(0.91) and abs(r[1] - (0.93 + ATLAS_MARGIN)) < 1e-6
    index = OverrideIndex(vectors[:1], 0.97, r[:1])
    assert index.nearest(_unit(0.92, 3)) is not None  # a rephrasing the global 0.97 would miss
    assert index.nearest(_unit(0.90, 3)) is None


def test_an_atlas_text_nearer_than_the_global_threshold_narrows_a_benign_override() -> None:
    items = [_override(0, "false_positive")]
    r = radii(np.stack([_unit(1.0, 1)]), items, threshold=0.97, reach=0.91, atlas_near=np.array([0.96], np.float32))
    assert abs(r[0] - (0.96 + ATLAS_MARGIN)) < 1e-6


def test_the_reach_needs_an_atlas_and_overrides_that_assert_harm_keep_the_global_threshold() -> None:
    vectors = np.stack([_unit(1.0, 1), _unit(0.5, 2)])
    items = [_override(0, "false_positive"), _override(1, "unsafe")]
    assert radii(vectors, items, threshold=0.97, reach=0.91).tolist() == [np.float32(0.97)] * 2
    near = np.array([0.2, 0.2], np.float32)
    assert radii(vectors, items, threshold=0.97, reach=0.91, atlas_near=near)[1] == np.float32(0.97)
    # A reviewed harmful text of the tenant still bounds the benign override, atlas or not.
    close = np.stack([_unit(1.0, 1), _unit(0.95, 1)])
    r = radii(close, items, threshold=0.97, reach=0.91, atlas_near=near)
    assert abs(r[0] - (0.95 + MARGIN)) < 1e-6


def test_the_atlas_never_stops_the_reviewed_text_itself_from_following_its_review() -> None:
    items = [_override(0, "false_positive")]
    r = radii(np.stack([_unit(1.0, 1)]), items, threshold=0.97, reach=0.91, atlas_near=np.array([0.999], np.float32))
    assert r[0] == np.float32(ATLAS_CEILING)
    assert OverrideIndex(np.stack([_unit(1.0, 1)]), 0.97, r).nearest(_unit(0.995, 2)) is not None
