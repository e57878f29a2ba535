"""Threshold calibration: best F1, capped by the benign false-positive rate on the calibration split."""

from __future__ import annotations

import numpy as np

from finetune.triage.scoring import calibrate, calibrate_groups


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


def test_group_calibration_keeps_the_union_of_labels_within_the_fpr_budget() -> None:
    # Eight labels whose benign false positives fall on different rows: 1 % each is ~8 % for the union.
    rng = np.random.default_rng(0)
    n_benign, n_pos, k = 1000, 50, 8
    scores = rng.uniform(0.0, 0.6, size=(n_benign + n_pos, k))
    scores[n_benign:] = rng.uniform(0.7, 1.0, size=(n_pos, k))
    targets = np.zeros_like(scores)
    targets[n_benign:] = 1.0
    benign = np.arange(n_benign + n_pos) < n_benign
    labels = [f"l{i}" for i in range(k)]
    per_label = calibrate(scores, targets, labels, benign=benign, max_fpr=0.01)
    union = lambda thr: (scores[benign] >= np.array([thr[lab] for lab in labels])).any(axis=1).mean()  # noqa: E731
    assert union(per_label) > 0.05
    grouped = calibrate_groups(scores, targets, labels, benign, {tuple(labels): 0.03})
    assert union(grouped) <= 0.03
    assert all(grouped[lab] >= per_label[lab] for lab in labels)


def test_labels_outside_every_group_keep_the_one_percent_cap() -> None:
    scores, targets, benign = _overconfident_calib()
    both = np.concatenate([scores, scores], axis=1)
    grouped = calibrate_groups(both, np.concatenate([targets, targets], axis=1), ["a", "b"], benign, {("a",): 0.0})
    assert grouped["b"] == calibrate(scores, targets, ["b"], benign=benign)["b"]
    assert (scores[benign, 0] >= grouped["a"]).mean() == 0.0


def test_a_group_also_holds_its_budget_on_the_rows_its_target_counts() -> None:
    # The hardest benign rows (role-play, documents) sit at the top of the benign range: 5 % of all benign rows
    # fire at the plain cap, but all of the hard ones would.
    scores, targets, benign = _overconfident_calib()
    hard = benign & (scores[:, 0] >= 0.45)
    plain = calibrate_groups(scores, targets, ["a"], benign, {("a",): 0.05})
    held = calibrate_groups(scores, targets, ["a"], benign, {("a",): 0.05}, also={("a",): [hard]})
    assert (scores[hard, 0] >= plain["a"]).mean() > 0.05
    assert (scores[hard, 0] >= held["a"]).mean() <= 0.05
    assert (scores[~benign, 0] >= held["a"]).all()  # the positives at 0.95 still fire


def _ceiling_case() -> tuple[list[dict], np.ndarray, dict[str, float]]:
    """Harmful requests at 0.9 and 0.3; a fifth of the look-alikes at 0.5; hateful statements at 0.4 and their
    benign contrasts at 0.1; every threshold shipped at 0.95 (nothing fires)."""
    from guard.taxonomy import INPUT_LABELS

    def row(source: str, labels: list[str]) -> dict:
        return {"text": "t", "source": source, "kind": "prompt", "labels": labels}

    spec = (
        [(row("simple_safety_tests", ["crime"]), "crime", 0.9)] * 50
        + [(row("simple_safety_tests", ["crime"]), "crime", 0.3)] * 50
        + [(row("cyberseceval", []), "crime", 0.5)] * 20
        + [(row("cyberseceval", []), "crime", 0.05)] * 80
        + [(row("oasst_prompts", []), "crime", 0.05)] * 100
        + [(row("ethos", ["hate_harassment"]), "hate_harassment", 0.4)] * 30
        + [(row("ethos", []), "hate_harassment", 0.1)] * 30
    )
    labels = list(INPUT_LABELS)
    scores = np.zeros((len(spec), len(labels)), dtype=np.float32)
    for i, (_, label, score) in enumerate(spec):
        scores[i, labels.index(label)] = score
    return [r for r, _, _ in spec], scores, {**dict.fromkeys(labels, 0.95), "refusal": 0.5}


def test_harmful_ceiling_is_held_to_the_look_alike_budget_not_only_the_real_user_fpr() -> None:
    from finetune.triage.scoring import target_ceilings
    from guard.taxonomy import INPUT_LABELS

    rows, scores, shipped = _ceiling_case()
    ceiling = target_ceilings(rows, scores, np.zeros(len(rows)), list(INPUT_LABELS), shipped)
    # Below 0.5 every harmful request fires, but so does a fifth of the look-alikes (budget 8 %).
    assert ceiling["harmful_recall"]["value"] == 0.5
    assert ceiling["harmful_recall"]["look_alikes"] == 0.0
    assert 0.5 < ceiling["harmful_recall"]["threshold"] <= 0.9


def test_hate_ceiling_finds_the_threshold_the_shipped_one_missed() -> None:
    from finetune.triage.scoring import quality_targets, target_ceilings
    from guard.taxonomy import INPUT_LABELS

    rows, scores, shipped = _ceiling_case()
    refusal = np.zeros(len(rows))
    assert quality_targets(rows, scores, refusal, list(INPUT_LABELS), shipped)["hateful_vs_contrasts"]["f1"] == 0.0
    ceiling = target_ceilings(rows, scores, refusal, list(INPUT_LABELS), shipped)
    assert ceiling["hate_f1"]["value"] == 1.0
    assert 0.1 < ceiling["hate_f1"]["threshold"] <= 0.4
    assert "refusal_f1" not in ceiling  # no answers among the rows
