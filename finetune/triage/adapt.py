"""`guard triage adapt`: the classifier learns from the guard's reviewed mistakes, behind a gate.

Reviewed texts (a reviewer's `false_positive`: the text is benign; `unsafe` with the label they picked) join a
replay of the shipped training mix, so the classifier does not forget, and new heads are fitted on the same
encoder and recalibrated on the same calibration sources (`refit.py`: minutes on this CPU). The candidate then
has to earn its promotion:
- it must get right a held-out share of the reviewed mistakes it never trained on (a fixed fraction of the
  reviews, chosen by a hash of the text, is kept out of training), and
- on the held-out evaluation sources it may not lose more than `max_recall_drop` of harmful, attack or hate
  recall, nor more than `max_source_recall_drop` on any one source, nor add more than `max_fpr_rise` of false
  positives on real users, look-alikes or role-play/documents, against a control: heads fitted the same way,
  with the same seed, on the same rows with the reviews' weight set to ~0.
The reviews carry a fixed share of the training weight (`review_share`), as copies spread over the minibatches
(`_spread`), and the thresholds may not flag more of any calib benign population than the serving version does
(`hold_flag_rates`). Reviewed texts are dropped from the evaluation rows. A poisoned batch (harmful requests marked
`false_positive`) fails one condition or both.

Why a control and not the serving heads: two fits of the heads differ by 2-4 points on these rates by the seed and
the data order alone, more than the 1-point margins, so against the serving heads a harmless batch of three reviews
was rejected (attack FPR 0.065 -> 0.080). The control shares the candidate's initialisation and its minibatch order
(the same rows, so the same permutation), so what differs is what the reviews taught. The serving heads' figures
are reported beside them (`serving`) and so is how far a plain refit lands from them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from finetune.triage.model import encoder_state, load_artifact, save_heads_artifact
from finetune.triage.refit import Embedded, embed, fit_calibrated, served_scores
from finetune.triage.scoring import group_flag_rates, quality_targets
from guard.taxonomy import ATTACKS, HARMFUL, INPUT_LABELS
from guard.triage.artifact import ARTIFACT_CONFIG
from guard.triage.atlas import HARM_ATLAS

if TYPE_CHECKING:
    from finetune.triage.heads import Heads


class AdaptError(ValueError):
    """The reviews cannot be used (a label outside the taxonomy, an empty batch); the message says which."""


@dataclass(frozen=True)
class Correction:
    """One reviewed text and what it should have been: no labels = benign."""

    text: str
    labels: tuple[str, ...]
    review_id: str = ""


@dataclass
class GateLimits:
    min_fixed_share: float = 0.5
    max_recall_drop: float = 0.01
    max_fpr_rise: float = 0.01
    # One held-out source may lose at most this much recall, whatever the aggregate does: reviews from one domain
    # (a forum's benign posts) can teach the heads to miss that domain's harmful rows while the aggregate rises.
    max_source_recall_drop: float = 0.05
    holdout_share: float = 0.3
    # The reviews together carry this share of the training weight, whatever the replay's size: at a fixed 5 per
    # review, 28 reviews were 0.4 % of a 33,000-row replay and fixed 11 % of the held-out reviewed mistakes.
    review_share: float = 0.04
    min_weight: float = 5.0  # a large batch still counts each review at least this many training rows
    # No anchors (the replay rows nearest a review, or those it dragged furthest, weighted up to hold the boundary):
    # on the issue 18 demo's gate rows they cost harmful recall whatever the batch (5 harmless reviews: -4.8 points
    # with 10 each), so they were removed.
    # Thresholds hold the serving version's flag rate on each calib benign population (ordinary traffic first).
    hold_flag_rates: bool = True


@dataclass
class AdaptReport:
    verdict: str  # "promote" | "reject"
    reasons: list[str]
    trained_on: int
    held_out: int
    fixed_share: float
    current: dict[str, float]  # the control refit (reviews weighted 0): what the gate compares with
    candidate: dict[str, float]
    serving: dict[str, float] = field(default_factory=dict)  # the heads that serve now, on the same rows
    thresholds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def read_corrections(path: Path) -> list[Correction]:
    """JSONL rows {"text", "label": "false_positive" | "unsafe", "labels": [...] for unsafe, "review_id"?}."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise AdaptError(f"{path}:{n}: not JSON") from None
        out.append(correction_of(row, f"{path}:{n}"))
    if not out:
        raise AdaptError(f"{path}: no reviews")
    return out


def corrections_from_store(db_url: str | None) -> list[Correction]:
    """The active review overrides (`guard/store/overrides.py`): the reviewed mistakes the proxy corrects now."""
    from guard.store.db import make_engine
    from guard.store.overrides import active_overrides

    if not db_url:
        raise AdaptError("no database configured (GUARD_DB_URL)")
    out = []
    for o in active_overrides(make_engine(db_url)):
        if o.label == "false_positive":
            out.append(Correction(o.text, (), str(o.review_id)))
        elif o.label == "unsafe" and o.unsafe_label in INPUT_LABELS:
            out.append(Correction(o.text, (o.unsafe_label,), str(o.review_id)))
    if not out:
        raise AdaptError("no active `false_positive` or `unsafe` reviews in the store")
    return out


def correction_of(row: dict, where: str) -> Correction:
    label, text = row.get("label"), row.get("text")
    if not isinstance(text, str) or not text.strip():
        raise AdaptError(f"{where}: a review needs the reviewed text")
    if label == "false_positive":
        return Correction(text, (), str(row.get("review_id", "")))
    if label == "unsafe":
        labels = tuple(row.get("labels") or ())
        if not labels or set(labels) - set(INPUT_LABELS):
            raise AdaptError(f"{where}: an `unsafe` review names its labels from {list(INPUT_LABELS)}")
        return Correction(text, labels, str(row.get("review_id", "")))
    raise AdaptError(f"{where}: label must be false_positive or unsafe, not {label!r}")


def held_out(c: Correction, share: float) -> bool:
    return int(hashlib.sha1(c.text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share


def review_weight(n_reviews: int, replay_weight: float, limits: GateLimits) -> float:
    """Per-review weight so that `n_reviews` carry `limits.review_share` of the fitted rows' total weight."""
    share = limits.review_share
    return max(limits.min_weight, share / (1 - share) * replay_weight / max(1, n_reviews))


def _spread(rows: list[dict], n_replay: int) -> tuple[list[dict], list[bool], np.ndarray]:
    """Each row weighted above 1 as that many copies of weight ~1, spread over the epoch's minibatches. The heads
    normalise each minibatch's loss by its weight: one review at weight 300 made its minibatch all about itself
    (with the nearest-neighbour anchors then weighted like it, 5 harmless reviews cost 17 points of harmful recall;
    spread, without anchors, +0.9). Returns the rows, which of them are reviews or added copies (not the replay as it
    was), and each row's index in `rows`."""
    out: list[dict] = []
    extra: list[bool] = []
    idx: list[int] = []
    for j, r in enumerate(rows):
        w = float(r.get("weight", 1.0))
        n = max(1, round(w))
        out += [{**r, "weight": w / n}] * n if n > 1 else [r]
        extra += [j >= n_replay] + [True] * (n - 1)
        idx += [j] * n
    return out, extra, np.array(idx)


def _row(c: Correction, weight: float) -> dict:
    return {"text": c.text, "labels": list(c.labels), "kind": "prompt", "source": "review", "weight": weight}


def adapt(
    current_dir: Path,
    corrections: list[Correction],
    split: dict[str, list[dict]],
    out_dir: Path,
    *,
    limits: GateLimits,
    cache_dir: Path | None,
    threads: int,
) -> AdaptReport:
    """Fit, calibrate and gate a candidate; it is written to `out_dir` whatever the verdict (with its report)."""
    current_cfg = json.loads((current_dir / ARTIFACT_CONFIG).read_text())
    if current_cfg.get("heads") != "factorised":
        raise AdaptError(f"{current_dir}: adaptation refits factorised heads (classifier v17 on); this one has none")
    train_cfg = current_cfg.get("train", {})
    learn = [c for c in corrections if not held_out(c, limits.holdout_share)]
    check = [c for c in corrections if held_out(c, limits.holdout_share)]
    if not learn:
        raise AdaptError("every review fell in the held-out share: review more exchanges before adapting")
    weight = review_weight(len(learn), sum(float(r.get("weight", 1.0)) for r in split["train"]), limits)
    fit_rows = split["train"] + [_row(c, weight) for c in learn]
    # A reviewed text that is also an evaluation row would grade the candidate on what it was taught.
    reviewed = {c.text for c in corrections}
    test = [r for r in split["test"] if r["text"] not in reviewed]
    scored = {"calib": split["calib"], "test": test, "check": [_row(c, 1.0) for c in check]}
    emb = embed(current_dir, fit_rows, scored, cache_dir=cache_dir, threads=threads)
    current_net, current_cfg = load_artifact(current_dir)
    # The version that serves now sets the ceiling: no calib benign population may be flagged more than it is.
    # Without it the thresholds float with the refit, and a promoted version can flag more ordinary prompts within
    # the gate's 1-point margin (the issue 18 demo: 2.8 % -> 3.3 % of held-out ordinary prompts).
    ceilings = None
    if limits.hold_flag_rates:
        calib_probs, _ = served_scores(current_net.heads, emb.windows["calib"])  # type: ignore[union-attr]
        ceilings = group_flag_rates(split["calib"], calib_probs, current_cfg["thresholds"])

    def fit(rows: list[dict], control: bool = False) -> tuple[Heads, dict[str, float]]:
        spread, extra, idx = _spread(rows, len(split["train"]))
        if control:  # the reviews and every added copy weighted ~0 (not 0: a minibatch of only those would divide
            spread = [{**r, "weight": 1e-6} if e else r for r, e in zip(spread, extra, strict=True)]  # by 0)
        return fit_calibrated(spread, split["calib"], Embedded(emb.first[idx], emb.windows), train_cfg, ceilings)

    # The control: the replay as it was, with the reviews' rows in place (their weights ~0).
    control_heads, control_thresholds = fit(fit_rows, control=True)
    heads, thresholds = fit(fit_rows)
    current = _summary(test, emb, control_heads, control_thresholds)
    serving = _summary(test, emb, current_net.heads, current_cfg["thresholds"])  # type: ignore[union-attr]
    candidate = _summary(test, emb, heads, thresholds)
    fixed = _fixed_share(check, emb, heads, thresholds)
    reasons = _gate(current, candidate, fixed, limits, len(check))
    adapted = {"reviews": len(learn), "held_out": len(check), "review_weight": round(weight, 2)}
    config = {**current_cfg, "thresholds": thresholds, "adapted": adapted}
    save_heads_artifact(heads, encoder_state(current_dir), config, out_dir)
    if (current_dir / HARM_ATLAS).is_file():  # the same encoder: its harm atlas holds for the new heads
        shutil.copyfile(current_dir / HARM_ATLAS, out_dir / HARM_ATLAS)
    report = AdaptReport(
        verdict="reject" if reasons else "promote",
        reasons=reasons,
        trained_on=len(learn),
        held_out=len(check),
        fixed_share=round(fixed, 4),
        current=current,
        candidate=candidate,
        serving=serving,
        thresholds=thresholds,
    )
    (out_dir / "adapt.json").write_text(report.to_json())
    return report


def _summary(test: list[dict], emb: Embedded, heads: object, thresholds: dict[str, float]) -> dict[str, float]:
    probs, refusal = served_scores(heads, emb.windows["test"])  # type: ignore[arg-type]
    q = quality_targets(test, probs, refusal, list(INPUT_LABELS), thresholds)
    fpr = q["harmful_requests"]["fpr_per_source"]
    hate = q["hateful_vs_contrasts"]["per_source"]
    return {
        "harmful_recall": q["harmful_requests"]["recall"],
        "hate_recall": q["hateful_vs_contrasts"]["recall"],
        "harmful_fpr_real_users": q["harmful_requests"]["fpr"],
        "look_alikes_flagged": q["look_alikes_flagged"]["flag_rate"],
        "attack_recall": q["attacks"]["recall"],
        "attack_fpr_roleplay_docs": q["attacks"]["fpr"],
        **{f"harmful_fpr:{k}": v for k, v in fpr.items()},
        **{f"harmful_recall:{k}": v for k, v in q["harmful_requests"]["recall_per_source"].items()},
        **{f"attack_recall:{k}": v for k, v in q["attacks"]["recall_per_source"].items()},
        **{f"hate_recall:{k}": v["recall"] for k, v in hate.items()},
    }


PER_SOURCE_RECALL = ("harmful_recall:", "attack_recall:", "hate_recall:")  # `_summary`'s per-source keys


def _decisions(probs: np.ndarray, thresholds: dict[str, float]) -> np.ndarray:
    cols = [INPUT_LABELS.index(lab) for lab in HARMFUL + ATTACKS]
    thr = np.array([thresholds[INPUT_LABELS[c]] for c in cols])
    return np.asarray((probs[:, cols] >= thr).any(axis=1))


def _fixed_share(check: list[Correction], emb: Embedded, heads: object, thresholds: dict[str, float]) -> float:
    if not check:
        return float("nan")
    probs, _ = served_scores(heads, emb.windows["check"])  # type: ignore[arg-type]
    flagged = _decisions(probs, thresholds)
    wanted = np.array([bool(set(c.labels) & set(HARMFUL + ATTACKS)) for c in check])
    return float((flagged == wanted).mean())


def _gate(current: dict, candidate: dict, fixed: float, limits: GateLimits, n_check: int) -> list[str]:
    keys = (
        "harmful_recall",
        "attack_recall",
        "harmful_fpr_real_users",
        "look_alikes_flagged",
        "attack_fpr_roleplay_docs",
    )
    unmeasured = [k for k in keys if np.isnan(current.get(k, np.nan)) or np.isnan(candidate.get(k, np.nan))]
    if unmeasured:  # no evidence is no promotion
        return [f"not measurable on the held-out sources (public data sets missing?): {', '.join(unmeasured)}"]
    reasons = []
    if n_check and fixed < limits.min_fixed_share:
        reasons.append(f"fixes {fixed:.0%} of the held-out reviewed mistakes (needs {limits.min_fixed_share:.0%})")
    for key in ("harmful_recall", "attack_recall", "hate_recall"):
        if key in current and candidate.get(key, np.nan) < current[key] - limits.max_recall_drop:
            reasons.append(f"{key} {current[key]:.3f} -> {candidate[key]:.3f} (may drop {limits.max_recall_drop})")
    for key in sorted(k for k in current if k.startswith(PER_SOURCE_RECALL)):
        if candidate.get(key, np.nan) < current[key] - limits.max_source_recall_drop:
            drop = limits.max_source_recall_drop
            reasons.append(f"{key} {current[key]:.3f} -> {candidate.get(key, np.nan):.3f} (one source may drop {drop})")
    for key in ("harmful_fpr_real_users", "look_alikes_flagged", "attack_fpr_roleplay_docs"):
        if candidate[key] > current[key] + limits.max_fpr_rise:
            reasons.append(f"{key} {current[key]:.3f} -> {candidate[key]:.3f} (may rise {limits.max_fpr_rise})")
    return reasons
