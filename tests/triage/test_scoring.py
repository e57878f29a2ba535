"""Threshold calibration: best F1, capped by the benign false-positive rate on the calibration split."""

from __future__ import annotations

import numpy as np

from guard.triage.scoring import calibrate


def _overconfident_calib() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Positives score 0.95, benign rows spread over 0.0-0.5: best F1 alone sits far above every benign row.
    pos = np.full(20, 0.95)
    neg = np.linspace(0.0, 0.5, 200)
    scores = np.concatenate([pos, neg])[:, None]
    targets = np.concatenate([np.ones(20), np.zeros(200)])[:, None]
    benign = np.concatenate([np.zeros(20, bool), np.ones(200, bool)])
    return scores, targets, benign


def test_threshold_is_lowered_to_where_one_percent_of_benign_rows_fire() -> None:
    scores, targets, benign = _overconfident_calib()
    plain = calibrate(scores, targets, ["x"])["x"]
    capped = calibrate(scores, targets, ["x"], benign=benign, max_fpr=0.01)["x"]
    assert capped < plain
    fired = (scores[benign, 0] >= capped).mean()
    assert 0.0 < fired <= 0.01


def test_capped_threshold_never_drops_below_the_floor() -> None:
    scores, targets, benign = _overconfident_calib()
    scores[benign] = 0.0
    assert calibrate(scores, targets, ["x"], benign=benign, floor=0.1)["x"] == 0.1
