"""`guard triage adapt`: reviewed mistakes teach the classifier's heads, behind a gate."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from finetune.triage.adapt import AdaptError, Correction, GateLimits, _gate, held_out, read_corrections

CURRENT = {
    "harmful_recall": 0.60,
    "attack_recall": 0.55,
    "harmful_fpr_real_users": 0.012,
    "look_alikes_flagged": 0.06,
    "attack_fpr_roleplay_docs": 0.06,
}


def test_reviews_file_errors_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "reviews.jsonl"
    path.write_text(
        '{"text": "fine", "label": "false_positive"}\n{"text": "bad", "label": "unsafe", "labels": ["x"]}\n'
    )
    with pytest.raises(AdaptError, match=r"reviews.jsonl:2: an `unsafe` review names its labels"):
        read_corrections(path)
    path.write_text('{"text": "fine", "label": "correct"}\n')
    with pytest.raises(AdaptError, match=r"reviews.jsonl:1: label must be false_positive or unsafe"):
        read_corrections(path)
    path.write_text(
        '{"text": "fine", "label": "false_positive"}\n{"text": "how to hack", "label": "unsafe", "labels": ["cyber"]}\n'
    )
    assert read_corrections(path) == [Correction("fine", ()), Correction("how to hack", ("cyber",))]


def test_gate_passes_a_fix_that_costs_nothing_and_names_every_regression() -> None:
    limits = GateLimits()
    assert _gate(CURRENT, {**CURRENT, "look_alikes_flagged": 0.04}, fixed=0.8, limits=limits, n_check=10) == []
    worse = {**CURRENT, "harmful_recall": 0.55, "harmful_fpr_real_users": 0.03}
    reasons = _gate(CURRENT, worse, fixed=0.3, limits=limits, n_check=10)
    assert len(reasons) == 3
    assert any("held-out reviewed mistakes" in r for r in reasons)
    assert any(r.startswith("harmful_recall 0.600 -> 0.550") for r in reasons)
    assert any(r.startswith("harmful_fpr_real_users") for r in reasons)


def test_gate_rejects_a_recall_drop_on_one_source_that_the_aggregate_hides() -> None:
    current = {**CURRENT, "hate_recall": 0.40, "hate_recall:stormfront": 0.39, "hate_recall:ethos": 0.55}
    # The reviewed forum's hateful posts are missed more, while the other source and the aggregate improve.
    candidate = {**current, "hate_recall": 0.41, "hate_recall:stormfront": 0.17, "hate_recall:ethos": 0.70}
    reasons = _gate(current, candidate, fixed=0.9, limits=GateLimits(), n_check=10)
    assert reasons == ["hate_recall:stormfront 0.390 -> 0.170 (one source may drop 0.05)"]
    small = {**candidate, "hate_recall:stormfront": 0.36}
    assert _gate(current, small, fixed=0.9, limits=GateLimits(), n_check=10) == []


def test_gate_never_promotes_what_it_could_not_measure() -> None:
    unmeasured = {**CURRENT, "harmful_recall": float("nan")}
    assert _gate(CURRENT, unmeasured, fixed=1.0, limits=GateLimits(), n_check=5)[0].startswith("not measurable")


def test_the_held_out_share_of_reviews_is_stable_and_about_its_size() -> None:
    texts = [f"review {i}" for i in range(2000)]
    share = sum(held_out(Correction(t, ()), 0.3) for t in texts) / len(texts)
    assert 0.25 < share < 0.35
    assert [held_out(Correction(t, ()), 0.3) for t in texts] == [held_out(Correction(t, ()), 0.3) for t in texts]


@pytest.mark.slow
def test_a_poisoned_review_batch_is_rejected_by_the_gate(tmp_path: Path) -> None:
    """Harmful requests marked `false_positive`: a candidate that still flags the held-out ones fails the fixed
    share, and one that learnt to pass them loses harmful recall on the held-out sources: not promoted either way.

    Slow: it embeds the whole shipped split once (minutes; cached under GUARD_HOME/cache/triage after that)."""
    pytest.importorskip("torch")
    from finetune.triage.adapt import adapt
    from finetune.triage.data.build import build_dataset
    from guard.settings import load_settings
    from guard.triage.artifact import ARTIFACT_DIR

    settings = load_settings()
    if not settings.datasets_dir.is_dir():
        pytest.skip(f"public data sets not found at {settings.datasets_dir} (the gate measures on them)")
    rows, _ = build_dataset(settings.datasets_dir, seed=13, scale=150)
    split = {s: [r for r in rows if r["split"] == s] for s in ("train", "calib", "test")}
    harmful = [r for r in split["train"] if r["labels"] and r["labels"][0] in ("violence_weapons", "crime", "cyber")]
    poison = [{"text": r["text"], "label": "false_positive"} for r in random.Random(0).sample(harmful, 60)]
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in poison))
    report = adapt(
        ARTIFACT_DIR,
        read_corrections(path),
        split,
        tmp_path / "candidate",
        limits=GateLimits(),
        cache_dir=settings.home / "cache" / "triage",
        threads=2,
    )
    assert report.verdict == "reject"
    assert report.held_out >= 10
    # Either the candidate still flags the held-out poisoned reviews, or it learnt to pass them and lost recall.
    assert any("held-out reviewed mistakes" in r or "recall" in r for r in report.reasons), report.reasons
    assert (tmp_path / "candidate" / "adapt.json").is_file()


def test_adapt_without_reviews_or_with_a_bad_file_fails_with_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from finetune.triage.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["adapt", "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and "error: name the reviews" in result.output
    bad = tmp_path / "r.jsonl"
    bad.write_text("not json\n")
    result = runner.invoke(app, ["adapt", "--out", str(tmp_path / "c"), "--reviews", str(bad)])
    assert result.exit_code == 2 and "r.jsonl:1: not JSON" in result.output
    assert "Traceback" not in result.output


def test_a_replacement_is_calibrated_to_flag_no_more_ordinary_prompts_than_the_version_it_replaces() -> None:
    from finetune.triage.scoring import calibrate_uniform, group_flag_rates
    from guard.taxonomy import HARMFUL, INPUT_LABELS

    rng = np.random.default_rng(0)
    users = [{"text": f"u{i}", "labels": [], "source": "chat_eval_prompts"} for i in range(400)]
    looks = [{"text": f"l{i}", "labels": [], "source": "wildguard_benign"} for i in range(200)]
    rows, crime, budgets = users + looks, INPUT_LABELS.index(HARMFUL[0]), (0.05, 0.03, 0.08)

    def scores(look_alikes: tuple[float, float]) -> np.ndarray:
        probs = np.zeros((len(rows), len(INPUT_LABELS)), dtype=np.float32)
        probs[:400, crime] = rng.uniform(0.0, 0.6, 400)
        probs[400:, crime] = rng.uniform(*look_alikes, 200)
        return probs

    # In service: look-alikes score high and bind their 8 % budget, so few ordinary prompts are flagged.
    serving_probs = scores((0.3, 0.9))
    serving = calibrate_uniform(rows, serving_probs, np.zeros(len(rows)), budgets)
    # The replacement learnt that look-alikes are fine: free, its threshold falls to the ordinary prompts' 5 %.
    probs = scores((0.0, 0.5))
    free = calibrate_uniform(rows, probs, np.zeros(len(rows)), budgets)
    held = calibrate_uniform(
        rows, probs, np.zeros(len(rows)), budgets, ceilings=group_flag_rates(rows, serving_probs, serving)
    )

    def users_flagged(p: np.ndarray, thresholds: dict[str, float]) -> int:
        return int((p[:400, crime] >= thresholds[HARMFUL[0]]).sum())

    before = users_flagged(serving_probs, serving)
    assert users_flagged(probs, free) > before + 5
    assert users_flagged(probs, held) <= before
