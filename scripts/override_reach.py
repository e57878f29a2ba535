"""How far may a reviewer's `false_positive` override reach? Measured on the calibration sources, never on the
held-out ones the demos report.

The harm atlas (`guard.triage.atlas`) here holds only the `train` role's harmful rows; the `calib` role plays a
deployment: its benign prompts the classifier flags are split by a hash of the text into reviewed ones (each
becomes a `false_positive` override) and unseen ones (should they be let through too?), and its flagged harmful
and attack prompts are what no override may reach. For each reach (the lowest radius) and atlas margin the script
prints the share of unseen flagged benign prompts let through and how many flagged harmful ones leaked. The
shipped pair (`GUARD_OVERRIDE_REACH` 0.93, `radius.ATLAS_MARGIN` 0.03) is the lowest reach of this grid at which
some margin leaks nothing, with that margin (classifier v18, 2026-12-07: 0 of 681 at 0.93; 1 at 0.92 whatever the
margin. v17 had 0.91: 0 of 625). The reach belongs to the encoder: re-run this for every new one.

    PYTHONPATH=. .venv/bin/python scripts/override_reach.py   # needs ../shared/datasets; minutes with the cache
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

REACHES = (0.97, 0.95, 0.93, 0.92, 0.91, 0.90, 0.88, 0.85, 0.80, 0.75)
MARGINS = (0.0, 0.01, 0.02, 0.03)


def reviewed(text: str) -> bool:
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) % 2 == 0


def unit(windows: list[np.ndarray]) -> np.ndarray:
    """The sentence vector as served: the renormalised sum of a text's window vectors."""
    v = np.stack([w.sum(axis=0) for w in windows])
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def main() -> None:
    import torch  # noqa: F401  (before the data builder, as `guard triage train` does)

    from finetune.triage.atlas import atlas_texts
    from finetune.triage.data.build import training_split
    from finetune.triage.model import load_artifact
    from finetune.triage.refit import embed, served_scores
    from guard.settings import load_settings
    from guard.taxonomy import ATTACKS, HARMFUL, INPUT_LABELS
    from guard.triage.artifact import ARTIFACT_CONFIG, ARTIFACT_DIR
    from guard.triage.atlas import nearest

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifact", type=Path, default=ARTIFACT_DIR)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    s = load_settings()
    config = json.loads((a.artifact / ARTIFACT_CONFIG).read_text())
    split, _ = training_split(config.get("train", {}), s.datasets_dir)
    atlas_rows = [
        {"text": t, "labels": [], "kind": "prompt"} for t in atlas_texts({"train": split["train"], "calib": []})
    ]
    calib = [r for r in split["calib"] if r["kind"] == "prompt"]
    emb = embed(a.artifact, atlas_rows, {"calib": calib}, cache_dir=s.home / "cache" / "triage", threads=a.threads)
    atlas = emb.first / np.maximum(np.linalg.norm(emb.first, axis=1, keepdims=True), 1e-12)
    net, cfg = load_artifact(a.artifact)
    probs, _ = served_scores(net.heads, emb.windows["calib"])  # type: ignore[union-attr]
    cols = [INPUT_LABELS.index(lab) for lab in HARMFUL + ATTACKS]
    flagged = (probs[:, cols] >= np.array([cfg["thresholds"][INPUT_LABELS[c]] for c in cols])).any(axis=1)
    harmful = np.array([bool(set(r["labels"]) & set(HARMFUL + ATTACKS)) for r in calib])
    benign = np.array([not r["labels"] for r in calib])
    is_review = np.array([reviewed(r["text"]) for r in calib])
    vec = unit(emb.windows["calib"])
    reviews = vec[benign & flagged & is_review]
    unseen = vec[benign & flagged & ~is_review] @ reviews.T
    leaks = vec[harmful & flagged] @ reviews.T
    near = nearest(atlas.astype(np.float32), reviews)
    print(
        f"atlas {len(atlas)} train harmful rows; calib prompts {len(calib)}: {len(reviews)} flagged benign reviewed, "
        f"{len(unseen)} flagged benign unseen, {len(leaks)} flagged harmful"
    )
    print("| reach | " + " | ".join(f"margin {m}: let through / leaked" for m in MARGINS) + " | no atlas |")
    print("|---" * (len(MARGINS) + 2) + "|")
    for reach in REACHES:
        cells = []
        for radius in [np.maximum(reach, near + m) for m in MARGINS] + [np.full(len(reviews), reach)]:
            through = (unseen >= radius).any(axis=1).mean() if len(unseen) else float("nan")
            cells.append(f"{through:.0%} / {int((leaks >= radius).any(axis=1).sum())}")
        print(f"| {reach} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
