"""Threshold calibration and the quality-target metrics (numpy only; shared by `train` and `eval`)."""

from __future__ import annotations

import numpy as np

from guard.taxonomy import ADVICE, ATTACKS, HARMFUL

ROLEPLAY_DOC_SOURCES = ("awesome_chatgpt_prompts", "bipia", "deepset_prompt_injections_lc", "synth:roleplay",
                        "synth:doc_clean", "synth:stdlib_doc", "synth:code_clean", "synth:addr_reader",
                        "synth:adv_safe", "synth:fiction_setup", "synth:doc_reader", "synth:doc_clean_v6")


def best_f1_threshold(scores: np.ndarray, positive: np.ndarray, lo: float = 0.3, hi: float = 0.9) -> float:
    if positive.sum() < 3 or (~positive).sum() < 3:
        return 0.5
    best_t, best_f1 = 0.5, -1.0
    for t in np.linspace(lo, hi, 81):
        pred = scores >= t
        tp = float((pred & positive).sum())
        f1 = 2 * tp / max(1.0, pred.sum() + positive.sum())
        if f1 > best_f1 + 1e-9:
            best_t, best_f1 = float(t), f1
    return round(best_t, 3)


def threshold_for_fpr(scores: np.ndarray, negative: np.ndarray, target_fpr: float) -> float:
    """Smallest threshold whose false-positive rate on `negative` rows is at most `target_fpr`."""
    neg = np.sort(scores[negative])[::-1]
    if len(neg) == 0:
        return 0.5
    k = int(np.floor(target_fpr * len(neg)))  # that many negatives may sit at or above the threshold
    return float(min(1.0, np.nextafter(neg[k], 2.0))) if k < len(neg) else 0.0


def prf(pred: np.ndarray, positive: np.ndarray) -> dict[str, float]:
    tp = float((pred & positive).sum())
    fp = float((pred & ~positive).sum())
    fn = float((~pred & positive).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r) if p + r else 0.0, 4),
            "support": int(positive.sum())}


def calibrate(scores: np.ndarray, targets: np.ndarray, labels: list[str], benign: np.ndarray | None = None,
              max_fpr: float = 0.01, floor: float = 0.1) -> dict[str, float]:
    """Best-F1 threshold per label, lowered to where `max_fpr` of the `benign` rows would fire (never below `floor`).

    `calib` shares sources with training, so the model is over-confident there and best-F1 thresholds sit high;
    on unseen sources they gave FPR 0.015 at recall 0.59. Capping each label at a 1 % calib FPR spends more of
    the held-out FPR budget on recall.
    """
    out = {}
    for i, lab in enumerate(labels):
        t = best_f1_threshold(scores[:, i], targets[:, i] > 0.5)
        if benign is not None and benign.any():
            # Round up: rounding the FPR threshold down would let the benign row just below it fire.
            t = max(floor, min(t, float(np.ceil(threshold_for_fpr(scores[:, i], benign, max_fpr) * 1000) / 1000)))
        out[lab] = t
    return out


CAPS = (0.03, 0.02, 0.015, 0.01, 0.0075, 0.005, 0.004, 0.003, 0.002, 0.001, 0.0)


def calibrate_groups(scores: np.ndarray, targets: np.ndarray, labels: list[str], benign: np.ndarray,
                     budgets: dict[tuple[str, ...], float], floor: float = 0.1,
                     also: dict[tuple[str, ...], np.ndarray] | None = None) -> dict[str, float]:
    """Per-label thresholds whose UNION stays within an FPR budget per label group (harmful, attacks).

    A benign prompt is a false positive when any label of the group fires, so eight harmful labels capped at 1 %
    each gave a 10 % union FPR on calib (and on held-out data). For each group, the per-label cap is the largest
    in `CAPS` whose union FPR on the `benign` rows, and on the group's rows in `also` when given, is within the
    group's budget. Labels in no group keep a 1 % cap.
    """
    out = calibrate(scores, targets, labels, benign=benign)
    col = {lab: i for i, lab in enumerate(labels)}
    for group, budget in budgets.items():
        members = [lab for lab in group if lab in col]
        masks = [benign] + ([also[group]] if also and group in also and also[group].any() else [])
        for cap in CAPS:
            thr = calibrate(scores[:, [col[m] for m in members]], targets[:, [col[m] for m in members]], members,
                            benign=benign, max_fpr=cap, floor=floor)
            fired = np.stack([scores[:, col[m]] >= thr[m] for m in members], axis=1).any(axis=1)
            if all(float(fired[m].mean()) <= budget for m in masks):
                break
        out.update(thr)
    return out


def quality_targets(rows: list[dict], scores: np.ndarray, refusal: np.ndarray, labels: list[str],
                    thresholds: dict[str, float]) -> dict:
    """The issue's targets on held-out rows (each row: labels, source, kind, refusal)."""
    idx = {lab: i for i, lab in enumerate(labels)}
    thr = np.array([thresholds[lab] for lab in labels])
    over = scores >= thr
    prompt = np.array([r.get("kind", "prompt") == "prompt" for r in rows])
    has = {lab: np.array([lab in r["labels"] for r in rows]) for lab in labels}
    benign = prompt & np.array([not r["labels"] for r in rows])
    out: dict = {}

    def group(names: tuple[str, ...], negatives: np.ndarray) -> dict:
        cols = [idx[n] for n in names]
        pos = prompt & np.any(np.stack([has[n] for n in names]), axis=0)
        score = scores[:, cols].max(axis=1)
        pred = over[:, cols].any(axis=1)
        t05 = threshold_for_fpr(score, negatives, 0.05)
        return {"positives": int(pos.sum()), "negatives": int(negatives.sum()),
                "recall": _rate(pred, pos), "fpr": _rate(pred, negatives),
                "recall_at_fpr_0.05": _rate(score >= t05, pos), "threshold_at_fpr_0.05": round(t05, 4)}

    out["harmful"] = group(HARMFUL, benign)
    rp = benign & np.array([r["source"] in ROLEPLAY_DOC_SOURCES for r in rows])
    out["attacks_vs_roleplay_docs"] = group(ATTACKS, rp)
    twins = prompt & np.array([r["source"] in ("synth:advice", "synth:info") for r in rows])
    adv_pos = np.any(np.stack([has[n] for n in ADVICE]), axis=0)
    adv_pred = over[:, [idx[n] for n in ADVICE]].any(axis=1)
    out["advice_vs_info_twins"] = prf(adv_pred[twins], adv_pos[twins])
    resp = np.array([r.get("kind") == "response" for r in rows])
    if resp.any():
        ref_true = np.array([bool(r.get("refusal")) for r in rows])
        out["refusal"] = prf((refusal >= thresholds.get("refusal", 0.5))[resp], ref_true[resp])
    out["per_source_flag_rate"] = _per_source(rows, over.any(axis=1) & prompt)
    return out


def _rate(pred: np.ndarray, mask: np.ndarray) -> float:
    return round(float(pred[mask].mean()), 4) if mask.any() else float("nan")


def _per_source(rows: list[dict], flagged: np.ndarray) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for i, r in enumerate(rows):
        if r.get("kind") == "response":
            continue
        key = f"{r['source']}:{'benign' if not r['labels'] else 'positive'}"
        d = out.setdefault(key, {"rows": 0, "flagged": 0})
        d["rows"] += 1
        d["flagged"] += int(flagged[i])
    for d in out.values():
        d["flag_rate"] = round(d["flagged"] / d["rows"], 4)
    return dict(sorted(out.items()))
