"""Issue 14's held-out targets for a triage artifact's heads on its served int8 embeddings (through the embedding
cache, so minutes, not the tens of minutes `guard triage eval` takes to score the test split from scratch). The
runtime's fp32 re-scoring of texts near a threshold is not applied: figures can differ from `guard triage eval`
by a few rows.

    PYTHONPATH=. .venv/bin/python scripts/triage_heldout.py [--artifact guard/triage/artifact]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from finetune.triage.data.build import training_split
from finetune.triage.model import load_artifact
from finetune.triage.refit import embed, served_scores
from finetune.triage.scoring import quality_targets
from guard.settings import load_settings
from guard.taxonomy import INPUT_LABELS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", type=Path, default=Path("guard/triage/artifact"))
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    settings = load_settings()
    cfg = json.loads((a.artifact / "triage.json").read_text())
    split, _ = training_split(cfg.get("train", {}), settings.datasets_dir)
    emb = embed(
        a.artifact,
        split["test"][:1],  # `embed` also returns the first windows of rows to fit on; none are fitted here
        {"test": split["test"]},
        cache_dir=settings.home / "cache" / "triage",
        threads=a.threads,
    )
    net, _ = load_artifact(a.artifact, merge=False)
    probs, refusal = served_scores(net.heads, emb.windows["test"])  # type: ignore[arg-type]
    m = quality_targets(split["test"], probs, refusal, list(INPUT_LABELS), cfg["thresholds"])
    print(json.dumps({k: v for k, v in m.items() if k != "per_source_flag_rate"}, indent=2))


if __name__ == "__main__":
    main()
