"""How much of the hate target's miss is label noise? The served classifier's hate F1 on the hand-reviewed rows of
the held-out hate sources (`finetune/triage/data/hate_review.yml`), by the reviewer's labels and by the files' own
labels on the same rows ("unclear" rows left out of both).

    PYTHONPATH=. .venv/bin/python scripts/hate_review.py [--model-dir var/triage]   # needs ../shared/datasets
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from guard.settings import load_settings
from guard.taxonomy import HARMFUL
from guard.triage.runtime import TriageModel

REVIEWS = Path(__file__).resolve().parent.parent / "finetune" / "triage" / "data" / "hate_review.yml"


def reviewed_rows(datasets: Path) -> dict[str, list[tuple[str, bool, bool]]]:
    """Per source: (text, reviewer says hate, file says hate) for each row reviewed as hate or not."""
    out: dict[str, list[tuple[str, bool, bool]]] = {}
    for source, reviews in yaml.safe_load(REVIEWS.read_text())["reviews"].items():
        raw = (datasets / f"{source}.jsonl").read_text(encoding="utf-8").splitlines()
        rows = []
        for r in reviews:
            row = json.loads(raw[r["line"]])
            if not row["text"].startswith(r["text"]):
                raise SystemExit(f"error: {REVIEWS.name}: {source} line {r['line']} no longer starts {r['text']!r}")
            if r["label"] != "unclear":
                rows.append((row["text"], r["label"] == "hate", row["label"] != "benign"))
        out[source] = rows
    return out


def f1(pred: list[bool], truth: list[bool]) -> float:
    tp = sum(p and t for p, t in zip(pred, truth, strict=True))
    return 2 * tp / max(1, sum(pred) + sum(truth))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", type=Path, default=None, help="a built triage model (default: GUARD_HOME/triage)")
    a = ap.parse_args()
    settings = load_settings()
    model = TriageModel.load(a.model_dir or settings.home / "triage", threads=2)
    harmful = set(HARMFUL)
    for source, rows in reviewed_rows(settings.datasets_dir).items():
        pred = [bool(set(r.labels) & harmful) for r in model.predict([t for t, _, _ in rows])]
        reviewer, files = [r for _, r, _ in rows], [f for _, _, f in rows]
        agree = sum(r == f for r, f in zip(reviewer, files, strict=True))
        print(
            f"{source}: {len(rows)} rows reviewed hate or not, labels agree on {agree}; hate F1 "
            f"{f1(pred, reviewer):.3f} by the reviewer, {f1(pred, files):.3f} by the file"
        )


if __name__ == "__main__":
    main()
