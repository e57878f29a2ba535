"""The tuning loop in front of a hosted chatbot API (GUARD_UPSTREAM_URL): there is no local model to train, so a
cycle collects this deployment's records, builds the preference pairs and exports them for the user's own
trainer (TRL JSONL, and OpenAI's preference fine-tuning JSONL), with a manifest. The watermark then moves, so the
next export holds only newer pairs."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from finetune import pairs as pairs_mod
from finetune.collect import Collected, Watermark, collect

NOT_RUN = (
    "DPO training, evaluation gates and promotion did not run: in upstream mode (GUARD_UPSTREAM_URL) there is no "
    "local model to train; fine-tune the hosted model with the exported pairs"
)


def record_model(model: str | None, upstream_url: str | None, served: str) -> str | None:
    """Which records a cycle reads: upstream mode takes every record of this deployment (clients name the hosted
    model, not GUARD_MODEL) unless --model picks one; local mode the served model's."""
    if model:
        return model
    return None if upstream_url else served


def deployment_meta(col: Collected, upstream_url: str | None) -> dict[str, Any]:
    """Where the pairs came from, for the manifest: the deployment, the models that answered, the window."""
    answered = Counter(r.upstream_model or r.model for r in col.records.values())
    host = urlsplit(upstream_url).hostname if upstream_url else None  # never the URL's credentials or path
    return {
        "deployment": {"mode": "upstream" if upstream_url else "local", "upstream_host": host},
        "answered_by": dict(answered),
        "since": col.since,  # the source watermark: the window [since, until) the pairs were built from
        "until": col.until,
        "source_counts": col.counts,
    }


@dataclass
class Export:
    manifest: dict[str, Any]
    out_dir: Path

    def report(self) -> str:
        c = self.manifest["counts"]
        files = ", ".join(f for f in self.manifest["files"] if f != "review.jsonl")
        return (
            f"ran: collect ({self.manifest['source_counts']['records']} records), preference pairs "
            f"({c['train']} train, {c['eval']} eval, {c['pending_review']} for review), export to {self.out_dir} "
            f"({files}, manifest.json). {NOT_RUN}."
        )


def export_cycle(opts: Any, upstream_url: str, model: str | None, log: Any = print) -> Export:
    """One upstream-mode cycle: collect since the watermark, build pairs (no samples: no local model), export."""
    from finetune.cycle import pair_sources
    from guard.store.db import make_engine

    watermark = Watermark(opts.state_dir, opts.model)
    out_dir = Path(opts.state_dir) / opts.model / "runs" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") / "pairs"
    engine = make_engine(opts.db_url)
    try:
        col = collect(engine, since=watermark.get(), until=datetime.now(UTC) - opts.settle, model=model)
    finally:
        engine.dispose()
    log(f"collected {col.counts} since {col.since or 'the beginning'}")
    src, _ = pair_sources(opts, None)
    manifest = pairs_mod.write(
        pairs_mod.build(col, src, opts.pairs),
        out_dir,
        opts.pairs,
        model=opts.model,
        **deployment_meta(col, upstream_url),
    )
    watermark.commit(col.until, exported=str(out_dir), pairs=manifest["counts"]["train"] + manifest["counts"]["eval"])
    return Export(manifest, out_dir)
