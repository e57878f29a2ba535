"""Issue 14's held-out targets for a triage artifact's heads on its served int8 embeddings (through the embedding
cache, so minutes, not the tens of minutes `guard triage eval` takes to score the test split from scratch). The
runtime's fp32 re-scoring of texts near a threshold is not applied: figures can differ from `guard triage eval`
by a few rows.

    PYTHONPATH=. .venv/bin/python scripts/triage_heldout.py [--artifact guard/triage/artifact]
        [--set hate_harassment=0.5 ...]

`--set LABEL=T` measures the heads at a threshold of your own for a label (as a rails profile's
`threshold:` does) and prints what each calib benign population is flagged at, so the cost of the change is
read on the calibration sources, the gain on the held-out ones.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from finetune.triage.data.build import training_split
from finetune.triage.model import load_artifact
from finetune.triage.refit import embed, served_scores
from finetune.triage.scoring import group_flag_rates, quality_targets
from guard.settings import load_settings
from guard.taxonomy import INPUT_LABELS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", type=Path, default=Path("guard/triage/artifact"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], type=_label_threshold, metavar="LABEL=T", help="a threshold")
    a = ap.parse_args()
    settings = load_settings()
    cfg = json.loads((a.artifact / "triage.json").read_text())
    split, _ = training_split(cfg.get("train", {}), settings.datasets_dir)
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
    m = quality_targets(split["test"], probs, refusal, list(INPUT_LABELS), thresholds)
    calib, _ = served_scores(net.heads, emb.windows["calib"])  # type: ignore[arg-type]
    rates = group_flag_rates(split["calib"], calib, thresholds, margin=0.0)
    m["calib_flag_rate"] = {g: {p: round(r, 4) for p, r in v.items()} for g, v in rates.items()}
    print(json.dumps({k: v for k, v in m.items() if k != "per_source_flag_rate"}, indent=2))


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
