"""Instant corrections: what 10,000 active overrides add to a request, and how many unrelated prompts a reviewed
set overrides at each cosine threshold.

    OMP_NUM_THREADS=1 .venv/bin/python bench/corrections.py [--overrides 10000] [--rounds 5] [--json out.json]

Needs the built triage model (GUARD_HOME/triage, default var/triage) and ../shared/datasets.

1. Latency: `Pipeline.screen` (replayed triage results of real prompts, no rails) with no overrides, with
   `--overrides` active overrides loaded through the store (SQLite) into the proxy's memory at the global 0.97,
   and the same with the harm atlas and `GUARD_OVERRIDE_REACH` (the default), in the same run, interleaved per
   round; the time to load each memory (embeddings cached in the store, the atlas compared once per override);
   p50 of each round, median over rounds. The override vectors are real embeddings of
   2,000 data-set prompts, and mixtures of two of them for the rest (embedding 10,000 texts takes minutes here).
2. Calibration: a "reviewed" set (benign security and health questions the classifier over-flags, and harmful
   prompts) against unrelated real user prompts (oasst_prompts, arena_hard): the share of unrelated prompts whose
   nearest reviewed text is at or over each threshold (these would be overridden), the share of topic-matched
   harmful/benign twins (jbb_behaviors) that would be, and the share of light rewordings of reviewed texts that
   still match.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from guard.corrections.memory import CorrectionMemory, could_act
from guard.corrections.radius import atlas_radii
from guard.domain import Message
from guard.pipeline import Exchange, NoRails, NoRecorder, Pipeline, TriageResult
from guard.settings import load_settings
from guard.store.db import make_engine, upgrade
from guard.store.schema import overrides
from guard.taxonomy import ATTACKS, HARMFUL
from guard.triage.atlas import nearest as atlas_nearest
from guard.triage.runtime import TriageModel

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "datasets"
THRESHOLDS = (0.9, 0.93, 0.95, 0.96, 0.97, 0.98)
REWORDINGS = ("Quick question: {}", "{} Thanks in advance.", "Could you help me with this? {}", "hi, {}")


def rows(name: str, n: int, label: str | None = None, seed: int = 0) -> list[str]:
    items = [json.loads(line) for line in (DATA / f"{name}.jsonl").open()]
    texts = [r["text"] for r in items if label is None or r["label"] == label]
    random.Random(seed).shuffle(texts)
    return texts[:n]


class Replay:
    def __init__(self, results: list[TriageResult]) -> None:
        self.results = results
        self.i = 0

    async def classify(self, exchange: Exchange) -> TriageResult:
        self.i = (self.i + 1) % len(self.results)
        return self.results[self.i]


def override_vectors(model: TriageModel, n: int) -> np.ndarray:
    texts = rows("oasst_prompts", 700) + rows("arena_hard", 700) + rows("cyberseceval", 300) + rows("aart", 300)
    real = model.embed(texts)
    rng = np.random.default_rng(0)
    extra = max(0, n - len(real))
    a, b = rng.integers(0, len(real), extra), rng.integers(0, len(real), extra)
    mixed = real[a] + rng.uniform(0.2, 1.0, (extra, 1)).astype(np.float32) * real[b]
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    return np.concatenate([real, mixed])[:n].astype(np.float32)


def seed_store(url: str, vectors: np.ndarray, version: str, tenant: str) -> None:
    engine = make_engine(url)
    upgrade(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            overrides.insert(),
            [
                {
                    "review_id": i,
                    "exchange_id": f"bench-{i}",
                    "tenant": tenant,
                    "label": "false_positive",
                    "text": f"reviewed text {i}",
                    "scores": "{}",
                    "embedding": v.tobytes(),
                    "embedding_version": version,
                    "created_at": now,
                    "changed_at": now,
                }
                for i, v in enumerate(vectors)
            ],
        )
    engine.dispose()


async def p50_us(pipeline: Pipeline, n: int) -> float:
    times = []
    for i in range(n):
        ex = Exchange(id=str(i), tenant="acme", messages=[Message.user("q")])
        t0 = time.perf_counter_ns()
        await pipeline.screen(ex)
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1000


async def latency(model: TriageModel, n_overrides: int, rounds: int, n: int) -> dict[str, float]:
    queries = rows("chat_eval_prompts", 300) + rows("wildguard_benign", 200)
    results = model.predict(queries)
    vectors = override_vectors(model, n_overrides)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        seed_store(url, vectors, model.version, "acme")
        engine = make_engine(url)
        memory = CorrectionMemory(
            engine, model.embed, model.version, threshold=0.97, refresh_s=3600, max_per_tenant=n_overrides
        )
        t0 = time.perf_counter()
        await memory.refresh()
        load_s = time.perf_counter() - t0
        assert memory.active == n_overrides
        # The shipped default: benign overrides reach down to 0.91 where the harm atlas allows (lower radii prune
        # fewer rows), and the atlas is compared with each override once, at load.
        reaching = CorrectionMemory(
            engine,
            model.embed,
            model.version,
            threshold=0.97,
            refresh_s=3600,
            max_per_tenant=n_overrides,
            atlas=model.harm_atlas,
            reach=load_settings().override_reach,
        )
        t0 = time.perf_counter()
        await reaching.refresh()
        atlas_load_s = time.perf_counter() - t0
        none = Pipeline(Replay(results), NoRails(), NoRails(), NoRecorder())
        loaded = Pipeline(Replay(results), NoRails(), NoRails(), NoRecorder(), memory)
        atlas = Pipeline(Replay(results), NoRails(), NoRails(), NoRecorder(), reaching)
        base, with_overrides, with_atlas = [], [], []
        for _ in range(rounds):
            base.append(await p50_us(none, n))
            with_overrides.append(await p50_us(loaded, n))
            with_atlas.append(await p50_us(atlas, n))
        engine.dispose()
    b, w, x = statistics.median(base), statistics.median(with_overrides), statistics.median(with_atlas)
    return {
        "none_p50_us": b,
        "overrides_p50_us": w,
        "added_p50_us": w - b,
        "ratio": w / b,
        "atlas_overrides_p50_us": x,
        "atlas_added_p50_us": x - b,
        "load_s": load_s,
        "atlas_load_s": atlas_load_s,
        "atlas": 0 if model.harm_atlas is None else len(model.harm_atlas),
        "overrides": n_overrides,
    }


def calibration(model: TriageModel) -> dict[str, object]:
    benign_reviewed = rows("cyberseceval", 150, "benign") + rows("medquad", 75)
    reviewed = benign_reviewed + rows("aart", 75, seed=1)
    unrelated = rows("oasst_prompts", 600, seed=2) + rows("arena_hard", 600, seed=2)
    twins = [json.loads(line) for line in (DATA / "jbb_behaviors.jsonl").open()]
    harmful = [t["text"] for t in twins if t["label"] == "harmful"]
    benign = [t["text"] for t in twins if t["label"] == "benign"]
    r = model.embed(reviewed)
    u = model.embed(unrelated)
    nearest = (u @ r.T).max(axis=1)
    twin_sim = (model.embed(benign) @ model.embed(harmful).T).max(axis=1)  # a benign twin vs reviewed harmful ones
    reworded = [REWORDINGS[i % len(REWORDINGS)].format(t) for i, t in enumerate(reviewed)]
    own = np.einsum("ij,ij->i", model.embed(reworded), r)
    table = {
        f"{t:.2f}": {
            "unrelated_overridden": float((nearest >= t).mean()),
            "twins_overridden": float((twin_sim >= t).mean()),
            "rewordings_matched": float((own >= t).mean()),
        }
        for t in THRESHOLDS
    }
    out: dict[str, object] = {"reviewed": len(reviewed), "unrelated": len(unrelated), "twins": len(benign)}
    if model.harm_atlas is not None:  # the default: benign reviews reach to GUARD_OVERRIDE_REACH, atlas-bounded
        n = len(benign_reviewed)
        radius = np.full(len(reviewed), 0.97, np.float32)
        near = atlas_nearest(model.harm_atlas, r[:n])
        radius[:n] = atlas_radii(near, load_settings().override_reach)
        predicted = model.predict(unrelated)
        flagged = np.array([bool(set(res.labels) & set(HARMFUL + ATTACKS)) for res in predicted])
        acts = np.array([could_act(res) for res in predicted])  # a benign override matches only these
        within = ((u @ r.T) >= radius).any(axis=1)
        out["default_with_atlas"] = {
            "benign_radius_median": float(np.median(radius[:n])),
            "unrelated_within_reach": float(within.mean()),
            "unrelated_overridden": float((within & acts).mean()),
            "unrelated_flagged": float(flagged.mean()),
            "unrelated_flagged_and_overridden": float((within & flagged).mean()),
            "twins_overridden": table["0.97"]["twins_overridden"],  # harmful reviews keep the global 0.97
            "rewordings_matched": float((own >= radius).mean()),
        }
    return out | {"by_threshold": table}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--overrides", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=2000, help="requests per round and variant")
    ap.add_argument("--skip-calibration", action="store_true")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} is absent: this bench reads the shared data sets")
    model = TriageModel.load(load_settings().triage_dir, device="cpu", threads=1)
    out: dict[str, object] = {"latency": asyncio.run(latency(model, a.overrides, a.rounds, a.n))}
    if not a.skip_calibration:
        out["calibration"] = calibration(model)
    print(json.dumps(out, indent=2))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
