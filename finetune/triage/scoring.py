"""Threshold calibration and the quality-target metrics (numpy only; shared by `train` and `eval`)."""

from __future__ import annotations

import numpy as np

from guard.taxonomy import ADVICE, ATTACKS, HARMFUL

# Generator sources that stand for a benign population of the public data (see `population_masks`).
SYNTH_LOOK_ALIKE = (
    "synth:scary",
    "synth:scary_idiom",
    "synth:scary_task",
    "synth:scary_word",
    "synth:sec_benign",
    "synth:sec_work",
    "synth:adv_safe",
    "synth:defensive",
    "synth:definitions",
    "synth:coping",
    "synth:counter_prejudice",
    "synth:public_facts",
    "synth:games_sport",
    "synth:info",
)
SYNTH_ROLEPLAY_DOC = (
    "synth:doc_clean",
    "synth:doc_clean_v6",
    "synth:doc_reader",
    "synth:stdlib_doc",
    "synth:code_clean",
    "synth:addr_reader",
    "synth:own_ask",
    "synth:sysprompt_twin",
)


def is_look_alike_source(source: str) -> bool:
    return _flag(source, "look_alike")


def _flag(source: str, name: str) -> bool:
    from finetune.triage.data.sources import source_table

    src = source_table().get(source)
    if src is not None:
        return bool(getattr(src, name))
    return source in {"look_alike": SYNTH_LOOK_ALIKE, "roleplay_doc": SYNTH_ROLEPLAY_DOC}.get(name, ())


def population_masks(rows: list[dict]) -> dict[str, np.ndarray]:
    """Benign prompts, and the three benign populations the FPR budgets hold on separately."""
    benign = np.array([not r["labels"] and r.get("kind", "prompt") == "prompt" for r in rows])
    out = {"benign": benign}
    for name in ("real_user", "look_alike", "roleplay_doc"):
        flags = {s: _flag(s, name) for s in {r["source"] for r in rows}}
        out[name] = benign & np.array([flags[r["source"]] for r in rows])
    return out


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
    return {
        "precision": round(p, 4),
        "recall": round(r, 4),
        "f1": round(2 * p * r / (p + r) if p + r else 0.0, 4),
        "support": int(positive.sum()),
    }


def calibrate(
    scores: np.ndarray,
    targets: np.ndarray,
    labels: list[str],
    benign: np.ndarray | None = None,
    max_fpr: float = 0.01,
    floor: float = 0.1,
) -> dict[str, float]:
    """Per label, the threshold where `max_fpr` of the `benign` rows fire (never below `floor`); the best-F1
    threshold where no benign rows are given."""
    out = {}
    for i, lab in enumerate(labels):
        t = best_f1_threshold(scores[:, i], targets[:, i] > 0.5)
        if benign is not None and benign.any():
            # Exactly where the FPR cap sits, above or below the best-F1 point: taking the lower of the two (as
            # before v16) let a label whose best-F1 point fires too often keep it, and the group's budget could
            # not be met (attack FPR 0.13 on held-out documents at a 0.03 budget). Round up: rounding the FPR
            # threshold down would let the benign row just below it fire.
            t = max(floor, float(np.ceil(threshold_for_fpr(scores[:, i], benign, max_fpr) * 1000) / 1000))
        out[lab] = t
    return out


CAPS = (0.03, 0.02, 0.015, 0.01, 0.0075, 0.005, 0.004, 0.003, 0.002, 0.001, 0.0)


def calibrate_groups(
    scores: np.ndarray,
    targets: np.ndarray,
    labels: list[str],
    benign: np.ndarray,
    budgets: dict[tuple[str, ...], float],
    floor: float = 0.1,
    also: dict[tuple[str, ...], list[np.ndarray]] | None = None,
) -> dict[str, float]:
    """Per-label thresholds whose UNION stays within an FPR budget per label group (harmful, attacks).

    A benign prompt is a false positive when any label of the group fires, so eight harmful labels capped at 1 %
    each gave a 10 % union FPR. For each group, the per-label cap is the largest in `CAPS` whose union FPR on the
    `benign` rows, and on each of the group's populations in `also`, is within the group's budget. Labels in no
    group keep a 1 % cap.
    """
    out = calibrate(scores, targets, labels, benign=benign)
    col = {lab: i for i, lab in enumerate(labels)}
    for group, budget in budgets.items():
        members = [lab for lab in group if lab in col]
        masks = [benign] + [m for m in (also or {}).get(group, []) if m.any()]
        for cap in CAPS:
            thr = calibrate(
                scores[:, [col[m] for m in members]],
                targets[:, [col[m] for m in members]],
                members,
                benign=benign,
                max_fpr=cap,
                floor=floor,
            )
            fired = np.asarray(np.stack([scores[:, col[m]] >= thr[m] for m in members], axis=1).any(axis=1))
            if all(float(fired[m].mean()) <= budget for m in masks):
                break
        out.update(thr)
    return out


def calibrate_thresholds(
    rows: list[dict], probs: np.ndarray, refusal: np.ndarray, budgets: tuple[float, float]
) -> dict[str, float]:
    """Thresholds from served `calib` scores: each label group's union within its budget (harmful, then attacks)
    on every benign population separately, so real users' traffic is not traded against look-alikes; refusal at
    its best F1 on the calib answers."""
    from guard.taxonomy import INPUT_LABELS, REFUSAL

    y = np.array([[1.0 if lab in r["labels"] else 0.0 for lab in INPUT_LABELS] for r in rows], dtype=np.float32)
    masks = population_masks(rows)
    thresholds = calibrate_groups(
        probs,
        y,
        list(INPUT_LABELS),
        masks["benign"],
        {HARMFUL: budgets[0], ATTACKS: budgets[1]},
        also={HARMFUL: [masks["real_user"], masks["look_alike"]], ATTACKS: [masks["real_user"], masks["roleplay_doc"]]},
    )
    thresholds[REFUSAL] = _refusal_threshold(rows, refusal)
    return thresholds


def _refusal_threshold(rows: list[dict], refusal: np.ndarray) -> float:
    """Best F1 on the calib answers."""
    resp = np.array([r.get("kind") == "response" for r in rows])
    truth = np.array([bool(r.get("refusal")) for r in rows])
    return best_f1_threshold(refusal[resp], truth[resp])


# Each label group is calibrated as one union score, held within its budget on each of these benign populations.
GROUPS = {
    "harmful": (HARMFUL, ("benign", "real_user", "look_alike")),
    "attacks": (ATTACKS, ("benign", "real_user", "roleplay_doc")),
}


def group_flag_rates(
    rows: list[dict], probs: np.ndarray, thresholds: dict[str, float], margin: float = 0.5
) -> dict[str, dict[str, float]]:
    """Per label group, the share of each calib benign population the group flags at `thresholds`: what a
    replacement version is held to (`calibrate_uniform`'s `ceilings`). `margin` rows are added to each count."""
    from guard.taxonomy import INPUT_LABELS

    pop = population_masks(rows)
    out: dict[str, dict[str, float]] = {}
    for name, (group, populations) in GROUPS.items():
        cols = [INPUT_LABELS.index(lab) for lab in group]
        fired = np.asarray((probs[:, cols] >= np.array([thresholds[lab] for lab in group])).any(axis=1))
        # Half a row above the count for ceilings: `threshold_for_fpr` floors rate x n, and a rate read back may
        # round below it.
        out[name] = {p: (float(fired[pop[p]].sum()) + margin) / pop[p].sum() for p in populations if pop[p].any()}
    return out


def calibrate_uniform(
    rows: list[dict],
    probs: np.ndarray,
    refusal: np.ndarray,
    budgets: tuple[float, float, float],
    ceilings: dict[str, dict[str, float]] | None = None,
) -> dict[str, float]:
    """Thresholds for factorised heads: one per label group, the lowest at which the group's union stays within
    its budget on every calib benign population (harmful: all benign, real users, and look-alikes with their own
    budget; attacks: all benign, real users, role-play/documents). Advice labels and refusal as in
    `calibrate_thresholds`.

    A harmful label's score is P(any harm) x P(category | harm), so the union is one score: per-label caps (what
    `calibrate_groups` does for independent sigmoids) spent the budget on the labels that least needed it. Measured
    on v16's encoder with factorised heads: look-alikes flagged 0.17 with per-label caps, 0.06 with one threshold,
    at a higher harmful recall (0.51 -> 0.57); chosen after seeing the held-out figures.

    `ceilings` (from `group_flag_rates` of the version being replaced) lower a population's budget to the rate
    that version flags it at, so a replacement never flags more of any calib benign population than it did.
    """
    from guard.taxonomy import INPUT_LABELS, REFUSAL

    harmful, attacks, look_alike = budgets
    pop = population_masks(rows)
    cols = [INPUT_LABELS.index(lab) for lab in ADVICE]
    y = np.array([[1.0 if lab in r["labels"] else 0.0 for lab in ADVICE] for r in rows], dtype=np.float32)
    thresholds = calibrate(probs[:, cols], y, list(ADVICE), benign=pop["benign"])  # each at a 1 % cap
    thresholds[REFUSAL] = _refusal_threshold(rows, refusal)
    budget = {"harmful": harmful, "attacks": attacks}
    for name, (group, populations) in GROUPS.items():
        held = (ceilings or {}).get(name, {})
        own = {p: look_alike if p == "look_alike" else budget[name] for p in populations}
        limits = {p: min(b, held.get(p, b)) for p, b in own.items()}
        union = probs[:, [INPUT_LABELS.index(lab) for lab in group]].max(axis=1)
        t = max((threshold_for_fpr(union, pop[p], b) for p, b in limits.items() if pop[p].any()), default=0.5)
        thresholds.update(dict.fromkeys(group, float(np.ceil(t * 1000) / 1000)))
    return thresholds


def quality_targets(
    rows: list[dict], scores: np.ndarray, refusal: np.ndarray, labels: list[str], thresholds: dict[str, float]
) -> dict:
    """The issue's targets on held-out rows (each row: labels, source, kind, refusal), at the shipped thresholds.

    `recall_at_fpr_0.05` re-tunes the threshold on these very rows: it shows what the scores allow, not what the
    shipped thresholds do, and is reported beside them, never instead of them.
    """
    col = {lab: i for i, lab in enumerate(labels)}
    over = scores >= np.array([thresholds[lab] for lab in labels])
    pop = population_masks(rows)
    prompt = np.array([r.get("kind", "prompt") == "prompt" for r in rows])
    content = np.array([_is_content(r["source"]) for r in rows])
    has = {lab: np.array([lab in r["labels"] for r in rows]) for lab in labels}

    def any_of(names: tuple[str, ...]) -> np.ndarray:
        return np.asarray(np.any(np.stack([has[n] for n in names]), axis=0))

    def fired(names: tuple[str, ...]) -> np.ndarray:
        return np.asarray(over[:, [col[n] for n in names]].any(axis=1))

    def top(names: tuple[str, ...]) -> np.ndarray:
        return scores[:, [col[n] for n in names]].max(axis=1)

    out: dict = {}
    # The targets count public sources only; the generator's held-out slot entries are in the per-source tables.
    real = np.array([not r["source"].startswith("synth:") for r in rows])
    harm_req = prompt & ~content & any_of(HARMFUL) & real
    out["harmful_requests"] = _detection(top(HARMFUL), fired(HARMFUL), harm_req, pop["real_user"], rows)
    look = pop["look_alike"] & real
    flagged = fired(HARMFUL + ATTACKS)
    out["look_alikes_flagged"] = {
        "rows": int(look.sum()),
        "flag_rate": _rate(flagged, look),
        "per_source": _by_source(rows, flagged, look),
    }
    hate_rows = prompt & content
    out["hateful_vs_contrasts"] = {
        **prf(fired(HARMFUL)[hate_rows], any_of(HARMFUL)[hate_rows]),
        "per_source": _prf_by_source(rows, fired(HARMFUL), any_of(HARMFUL), hate_rows),
    }
    out["attacks"] = _detection(
        top(ATTACKS), fired(ATTACKS), prompt & any_of(ATTACKS) & real, pop["roleplay_doc"] & real, rows
    )
    twins = prompt & np.array([r["source"] in ("synth:advice", "synth:info") for r in rows])
    out["advice_vs_info_twins"] = prf(fired(ADVICE)[twins], any_of(ADVICE)[twins])
    resp = np.array([r.get("kind") == "response" for r in rows])
    if resp.any():
        ref_true = np.array([bool(r.get("refusal")) for r in rows])
        ref_pred = refusal >= thresholds.get("refusal", 0.5)
        real = resp & np.array([not r["source"].startswith("synth:") for r in rows])
        out["refusal"] = {
            "real_answers": prf(ref_pred[real], ref_true[real]),
            "synthetic_answers": prf(ref_pred[resp & ~real], ref_true[resp & ~real]),
        }
    out["per_source_flag_rate"] = _per_source(rows, over[:, [col[n] for n in HARMFUL + ATTACKS]].any(axis=1) & prompt)
    return out


def target_ceilings(
    rows: list[dict], scores: np.ndarray, refusal: np.ndarray, labels: list[str], shipped: dict[str, float]
) -> dict[str, dict]:
    """The best each missed-or-met target reaches when its group's threshold is swept on these very rows (the other
    groups stay at `shipped`): harmful recall with the real-user FPR at most 0.05, every real-user source at most
    0.08 and the look-alikes at most 0.08 (the issue's constraints); hate F1; attack recall with role-play and
    documents at most 0.05; refusal F1. Tuned on the rows it reports: it tells whether a miss is the thresholds'
    (ceiling above the target) or the scores' (ceiling below it), and is never a result.
    """
    best: dict[str, dict] = {}

    def keep(name: str, value: float, t: float, **context: float) -> None:
        if value > best.get(name, {}).get("value", -1.0):
            best[name] = {"value": round(value, 4), "threshold": round(t, 3), **context}

    def at(group: tuple[str, ...], t: float) -> dict:
        return quality_targets(rows, scores, refusal, labels, {**shipped, **dict.fromkeys(group, t)})

    for t in np.round(np.arange(0.005, 1.0, 0.005), 3).tolist():
        q = at(HARMFUL, t)
        h, look = q["harmful_requests"], q["look_alikes_flagged"]["flag_rate"]
        if h["fpr"] <= 0.05 and max(h["fpr_per_source"].values(), default=0.0) <= 0.08 and look <= 0.08:
            keep("harmful_recall", h["recall"], t, real_user_fpr=h["fpr"], look_alikes=look)
        keep("hate_f1", q["hateful_vs_contrasts"]["f1"], t, look_alikes=look)
        a = at(ATTACKS, t)["attacks"]
        if a["fpr"] <= 0.05:
            keep("attack_recall", a["recall"], t, fpr=a["fpr"])
        if "refusal" in q:
            keep("refusal_f1", at(("refusal",), t)["refusal"]["real_answers"]["f1"], t)
    return best


def _is_content(source: str) -> bool:
    from finetune.triage.data.sources import source_table

    src = source_table().get(source)
    return src is not None and src.kind == "content"


def _detection(score: np.ndarray, pred: np.ndarray, pos: np.ndarray, neg: np.ndarray, rows: list[dict]) -> dict:
    t05 = threshold_for_fpr(score, neg, 0.05)
    return {
        "positives": int(pos.sum()),
        "negatives": int(neg.sum()),
        "recall": _rate(pred, pos),
        "fpr": _rate(pred, neg),
        "fpr_per_source": _by_source(rows, pred, neg),
        "recall_per_source": _by_source(rows, pred, pos),
        "recall_at_fpr_0.05": _rate(score >= t05, pos),
        "threshold_at_fpr_0.05": round(t05, 4),
    }


def _by_source(rows: list[dict], pred: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    sources = sorted({r["source"] for r, m in zip(rows, mask, strict=True) if m})
    src = np.array([r["source"] for r in rows])
    return {s: _rate(pred, mask & (src == s)) for s in sources}


def _prf_by_source(rows: list[dict], pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict[str, dict]:
    src = np.array([r["source"] for r in rows])
    return {s: prf(pred[mask & (src == s)], truth[mask & (src == s)]) for s in sorted(set(src[mask]))}


def worst_errors(
    rows: list[dict], scores: np.ndarray, labels: list[str], thresholds: dict[str, float], n: int = 30, width: int = 100
) -> dict[str, list[dict]]:
    """The `n` most confident false positives (benign prompts) and false negatives (harmful/attack prompts)."""
    groups = HARMFUL + ATTACKS
    cols = [labels.index(g) for g in groups]
    # In log-odds: a raw difference would rank every miss by the label with the lowest threshold.
    margin = _logit(scores[:, cols]) - _logit(np.array([thresholds[g] for g in groups]))
    best = margin.max(axis=1)
    top_label = [groups[j] for j in margin.argmax(axis=1)]
    prompt = [r.get("kind", "prompt") == "prompt" for r in rows]
    fp = [i for i, r in enumerate(rows) if prompt[i] and not r["labels"] and best[i] >= 0]
    fn = [i for i, r in enumerate(rows) if prompt[i] and set(r["labels"]) & set(groups) and best[i] < 0]

    def show(i: int) -> dict:
        return {
            "source": rows[i]["source"],
            "truth": ",".join(rows[i]["labels"]) or "benign",
            "top_label": top_label[i],
            "margin": round(float(best[i]), 3),
            "text": rows[i]["text"][:width].replace("\n", " "),
        }

    return {
        "false_positives": [show(i) for i in sorted(fp, key=lambda i: -best[i])[:n]],
        "false_negatives": [show(i) for i in sorted(fn, key=lambda i: best[i])[:n]],
    }


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


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
