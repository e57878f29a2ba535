"""One classifier adaptation cycle: adapt -> register (always) -> promote when the gate passes -> retire overrides.

Shared by `guard triage adapt` and `guard retrain`. Overrides are retired here, at promotion, not when each
replica swaps: it is the one place that runs once per promotion and knows the store; replicas see both changes
within their poll intervals (GUARD_TRIAGE_POLL_S, GUARD_OVERRIDE_REFRESH_S).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from finetune.triage.adapt import AdaptReport, Correction, GateLimits, adapt
from finetune.triage.versions import (
    commit_watermark,
    current_artifact,
    current_name,
    promote,
    register_candidate,
    registry,
    watermark,
)
from guard.triage.artifact import ARTIFACT_CONFIG

if TYPE_CHECKING:
    from guard.settings import Settings

Split = tuple[dict[str, list[dict]], dict]  # rows by split (train, calib, test), and the data manifest


@dataclass(frozen=True)
class Places:
    models_root: Path  # the registry root (GUARD_HOME/models)
    shipped_build: Path  # `guard triage build` output: the implicit first version
    datasets_dir: Path
    cache_dir: Path | None
    db_url: str | None = None  # where overrides are retired; None: not retired

    @classmethod
    def from_settings(cls, s: Settings, datasets_dir: Path | None = None) -> Places:
        return cls(
            models_root=s.model_dir,
            shipped_build=s.triage_dir,
            datasets_dir=datasets_dir if datasets_dir is not None else s.datasets_dir,
            cache_dir=s.home / "cache" / "triage",
            db_url=s.database_url,
        )


@dataclass(frozen=True)
class AdaptRun:
    report: AdaptReport
    version: str
    base: str
    promoted: bool
    retired: int

    def summary(self) -> str:
        if self.promoted:
            return f"triage {self.version} promoted (from {self.base}); {self.retired} overrides retired"
        if self.report.verdict == "promote":
            return f"triage {self.version} passed the gate, registered (not promoted)"
        return f"triage {self.version} rejected by the gate: " + "; ".join(self.report.reasons)


def run(
    places: Places,
    corrections: list[Correction],
    *,
    promote_passing: bool = True,
    limits: GateLimits | None = None,
    threads: int = 2,
    out: Path | None = None,
    split: Split | None = None,
) -> AdaptRun:
    """`split`: the replay and evaluation data (default: the data the serving artifact was trained on)."""
    from finetune.triage.data.build import training_split

    reg = registry(places.models_root)
    base_artifact = current_artifact(reg)
    base = current_name(reg, places.shipped_build)
    train_cfg = json.loads((base_artifact / ARTIFACT_CONFIG).read_text()).get("train", {})
    rows, manifest = split or training_split(train_cfg, places.datasets_dir)
    with tempfile.TemporaryDirectory(prefix="triage-adapt-") as tmp:
        out_dir = out or Path(tmp) / "candidate"
        report = adapt(
            base_artifact,
            corrections,
            rows,
            out_dir,
            limits=limits or GateLimits(),
            cache_dir=places.cache_dir,
            threads=threads,
        )
        meta = {
            "base": base,
            "data_hash": data_hash(corrections, manifest),
            "reviews": {"trained_on": report.trained_on, "held_out": report.held_out},
            "metrics": {"current": report.current, "candidate": report.candidate, "fixed_share": report.fixed_share},
            "verdict": {"status": report.verdict, "reasons": report.reasons},
        }
        version = register_candidate(reg, out_dir, meta)
    if report.verdict != "promote" or not promote_passing:
        return AdaptRun(report, version, base, False, 0)
    mv = promote(reg, version, places.shipped_build)
    return AdaptRun(report, version, base, True, retire(places.db_url, mv.path))


def adapt_step(places: Places, *, threads: int = 2, split: Split | None = None) -> str:
    """`guard retrain`'s classifier step: adapt on the store's reviews when new ones arrived since the last
    adaptation (the watermark, an override id, is kept in the registry); one line saying what happened."""
    from finetune.triage.adapt import AdaptError, corrections_from_store
    from guard.store.db import make_engine
    from guard.store.overrides import active_overrides

    if not places.db_url:
        return "classifier adaptation: not run (no database configured)"
    reg = registry(places.models_root)
    mark = watermark(reg)
    engine = make_engine(places.db_url)
    try:
        reviews = [o for o in active_overrides(engine) if o.label in ("false_positive", "unsafe")]
    finally:
        engine.dispose()
    if not any(o.id > mark for o in reviews):
        return "classifier adaptation: not run (no new false_positive/unsafe reviews since the last adaptation)"
    try:
        result = run(places, corrections_from_store(places.db_url), threads=threads, split=split)
    except AdaptError as exc:
        return f"classifier adaptation: not run ({exc})"
    commit_watermark(reg, max(o.id for o in reviews), version=result.version, verdict=result.report.verdict)
    return f"classifier adaptation: {result.summary()}"


def retire(db_url: str | None, built: Path) -> int:
    """Retire the active overrides the built model at `built` now decides as its reviews say."""
    if not db_url:
        return 0
    from guard.corrections.retire import retire_settled
    from guard.store.db import make_engine
    from guard.triage.runtime import TriageModel

    engine = make_engine(db_url)
    try:
        return retire_settled(engine, TriageModel.load(built, device="cpu"))
    finally:
        engine.dispose()


def data_hash(corrections: list[Correction], manifest: dict) -> str:
    h = hashlib.sha256(json.dumps(manifest.get("sources", {}), sort_keys=True).encode())
    for c in sorted(corrections, key=lambda c: (c.text, c.labels)):
        h.update(json.dumps([c.text, list(c.labels)]).encode())
    return h.hexdigest()[:16]
