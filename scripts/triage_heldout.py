"""Issue 14's held-out targets for a triage artifact's heads on its served int8 embeddings (through the embedding
cache, so minutes, not the tens of minutes `guard triage eval` takes to score the test split from scratch). The
runtime's fp32 re-scoring of texts near a threshold is not applied: figures can differ from `guard triage eval`
by a few rows.

    PYTHONPATH=. .venv/bin/python scripts/triage_heldout.py [--artifact guard/triage/artifact]
        [--set hate_harassment=0.5 ...]

`--set LABEL=T` measures the heads at a threshold of your own for a label (as a rails profile's
`threshold:` does) and prints what each calib benign population is flagged at, so the cost of the change is
read on the calibration sources, the gain on the held-out ones.

`--ceiling` asks whether a miss is the thresholds' or the scores': `scoring.target_ceilings` on the test split, the
best each target reaches at thresholds tuned on the very rows it is measured on. An upper bound on what any
calibration of these scores can ship, never a result.

`--refit-seeds 13,1,2,3,4` compares encoders rather than one fit of heads: for each seed it fits and calibrates
new heads on the artifact's encoder (as `guard triage refit` does) and prints the targets, then their mean. A
single fit moves look-alike flags by about 2 points. `calib_refusal_f1` is the refusal head on the calib split's real
answers at the threshold fitted on them (best F1): optimistic, but it compares refusal recipes without the test split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from finetune.triage.data.build import training_split
from finetune.triage.model import load_artifact
from finetune.triage.refit import embed, fit_calibrated, served_scores
from finetune.triage.scoring import group_flag_rates, quality_targets, target_ceilings
from guard.settings import load_settings
from guard.taxonomy import INPUT_LABELS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", type=Path, default=Path("guard/triage/artifact"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], type=_label_threshold, metavar="LABEL=T", help="a threshold")
    ap.add_argument("--ceiling", action="store_true", help="best each target reaches at thresholds tuned on test")
    ap.add_argument("--refit-seeds", type=_seeds, default=None, metavar="S,S,...", help="fit new heads per seed")
    a = ap.parse_args()
    settings = load_settings()
    cfg = json.loads((a.artifact / "triage.json").read_text())
    split, _ = training_split(cfg.get("train", {}), settings.datasets_dir)
    if a.refit_seeds:
        refit_seeds(
            a.artifact, split, cfg.get("train", {}), a.refit_seeds, settings.home / "cache" / "triage", a.threads
        )
        return
    thresholds = {**cfg["thresholds"], **dict(a.set)}
    emb = embed(
        a.artifact,
        split["test"][:1],  # `embed` also returns the first windows of rows to fit on; none are fitted here
        {"test": split["test"], "calib": split["calib"]},
        cache_dir=settings.home / "cache" / "triage",
        threads=a.threads,
    )
    net, _ = load_artifact(a.artifact, merge=False)
    probs, refusal = served_scores(net.heads, emb.windows["test"])  # type: ignore[arg-type]
    if a.ceiling:
        shipped = _brief(quality_targets(split["test"], probs, refusal, list(INPUT_LABELS), thresholds))
        ceilings = target_ceilings(split["test"], probs, refusal, list(INPUT_LABELS), thresholds)
        print(json.dumps({"shipped": shipped, "ceiling": ceilings}, indent=2))
        return
    m = quality_targets(split["test"], probs, refusal, list(INPUT_LABELS), thresholds)
    calib, _ = served_scores(net.heads, emb.windows["calib"])  # type: ignore[arg-type]
    rates = group_flag_rates(split["calib"], calib, thresholds, margin=0.0)
    m["calib_flag_rate"] = {g: {p: round(r, 4) for p, r in v.items()} for g, v in rates.items()}
    print(json.dumps({k: v for k, v in m.items() if k != "per_source_flag_rate"}, indent=2))


def refit_seeds(
    artifact: Path, split: dict[str, list[dict]], train_cfg: dict, seeds: list[int], cache: Path, threads: int
) -> None:
    emb = embed(artifact, split["train"], {s: split[s] for s in ("calib", "test")}, cache_dir=cache, threads=threads)
    rows = []
    for seed in seeds:
        heads, thresholds = fit_calibrated(split["train"], split["calib"], emb, {**train_cfg, "seed": seed})
        probs, refusal = served_scores(heads, emb.windows["test"])
        row = _brief(quality_targets(split["test"], probs, refusal, list(INPUT_LABELS), thresholds))
        calib, calib_refusal = served_scores(heads, emb.windows["calib"])
        on_calib = quality_targets(split["calib"], calib, calib_refusal, list(INPUT_LABELS), thresholds)
        row["calib_refusal_f1"] = on_calib["refusal"]["real_answers"]["f1"]
        rows.append(row)
        print(json.dumps({"seed": seed, **row}))
    print(json.dumps({"mean": {k: round(sum(r[k] for r in rows) / len(rows), 4) for k in rows[0]}}))


def _brief(m: dict) -> dict[str, float]:
    h, a = m["harmful_requests"], m["attacks"]
    return {
        "harmful_recall": h["recall"],
        "real_user_fpr": h["fpr"],
        "harmful_recall_at_fpr_0.05": h["recall_at_fpr_0.05"],
        "look_alikes": m["look_alikes_flagged"]["flag_rate"],
        "hate_f1": m["hateful_vs_contrasts"]["f1"],
        "attack_recall": a["recall"],
        "attack_fpr": a["fpr"],
        "advice_f1": m["advice_vs_info_twins"]["f1"],
        "refusal_f1": m["refusal"]["real_answers"]["f1"],
    }


def _seeds(value: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: want comma-separated integers, e.g. 13,1,2") from None


def _label_threshold(value: str) -> tuple[str, float]:
    label, _, t = value.partition("=")
    try:
        threshold = float(t)
    except ValueError:
        threshold = -1.0
    if label not in INPUT_LABELS or not 0.0 <= threshold <= 1.0:
        raise argparse.ArgumentTypeError(f"{value!r}: want LABEL=T, a triage label and a threshold in [0, 1]")
    return label, threshold


if __name__ == "__main__":
    main()
