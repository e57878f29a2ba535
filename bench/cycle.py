"""Wall time of one full retraining cycle on ~N preference pairs (SmolLM2-135M, shipped DPO config, CPU).

    OMP_NUM_THREADS=1 .venv/bin/python bench/cycle.py --pairs 500

Seeds a fresh SQLite store with N flagged exchanges (half over-refused benign requests, half unsafe
compliance; 10% of the over-refusals have no reviewer correction, so the cycle samples candidates from the
model for them), then runs `finetune.cycle.run_cycle` once and prints the per-step timings as JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from finetune.traffic import prompts

REFUSAL = "I'm sorry, but I can't help with that."


def seed(url: str, n: int, uncorrected_share: float) -> None:
    from guard.records import ExchangeRecord, Message
    from guard.store.db import insert_records, insert_review, make_engine, upgrade

    upgrade(url)
    engine = make_engine(url)
    benign = prompts("scary_benign") + prompts("benign")
    harmful = prompts("harmful")
    t0 = datetime.now(UTC) - timedelta(hours=1)
    recs, reviews = [], []
    for i in range(n):
        over = i % 2 == 0
        p = benign[i % len(benign)] if over else harmful[i % len(harmful)]
        rec = ExchangeRecord(
            exchange_id=f"chatcmpl-{uuid.uuid4().hex}",
            tenant="bench",
            created_at=t0 + timedelta(seconds=i),
            model="smollm2-135m-instruct",
            messages=[Message(role="user", content=f"{p.text} (ticket {i})")],
            response=REFUSAL if over else "Sure, here are the steps you asked for: first, get the materials.",
            flags=["model_refused", "over_refused"] if over else ["unsafe_compliance"],
            triage_labels=[] if over else ["crime"],
        )
        recs.append(rec)
        if over and (i // 2) % round(1 / uncorrected_share) != 0:
            reviews.append((rec.exchange_id, "Sure. Here is a clear and safe answer to your question, step by step."))
    insert_records(engine, recs)
    for ex_id, correction in reviews:
        insert_review(engine, ex_id, "over_refusal", correction=correction, reviewer="bench")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=500)
    ap.add_argument("--uncorrected-share", type=float, default=0.1)
    ap.add_argument("--work", type=Path, default=Path("var/bench/cycle"))
    ap.add_argument(
        "--small-suites", action="store_true", help="the 96-prompt shipped suites (figures before issue 17)"
    )
    ap.add_argument(
        "--no-answer-ahead",
        action="store_true",
        help="the current model answers the suites after training, not during it (the baseline)",
    )
    ap.add_argument("--workers", type=int, default=2, help="EvalOptions.workers (1: the baseline)")
    a = ap.parse_args()

    from finetune.cycle import CycleOptions, run_cycle
    from finetune.evaluate import EvalOptions
    from finetune.registry import Registry
    from guard.backends.prepare import prepare_default_model
    from guard.settings import DEFAULT_MODEL, load_settings

    settings = load_settings()
    shutil.rmtree(a.work, ignore_errors=True)
    a.work.mkdir(parents=True)
    base = prepare_default_model(settings).path
    reg = Registry(a.work / "models", DEFAULT_MODEL)
    reg.promote(reg.add(base, None, {}, version="base"))
    url = f"sqlite:///{(a.work / 'guard.db').resolve()}"
    seed(url, a.pairs, a.uncorrected_share)
    opts = CycleOptions(
        model=DEFAULT_MODEL,
        state_dir=a.work / "finetune",
        models_root=a.work / "models",
        db_url=url,
        rails_dir=settings.rails_dir,
        triage_dir=None,
        settle=timedelta(0),
        min_pairs=10,
        datasets_dir=None if a.small_suites else settings.datasets_dir,  # as `guard retrain` builds its suites
        answer_ahead=not a.no_answer_ahead,
        eval=EvalOptions(workers=a.workers),
    )
    t0 = time.perf_counter()
    res = run_cycle(opts)
    wall = time.perf_counter() - t0
    manifest = json.loads((res.run_dir / "pairs" / "manifest.json").read_text())
    train = json.loads((res.run_dir / "train" / "train_log.json").read_text()) if res.status != "skipped" else {}
    out = {
        "pairs": manifest["counts"],
        "status": res.status,
        "cycle_wall_s": round(wall, 1),
        "timings_s": {k: round(v, 1) for k, v in res.timings.items()},
        "train_steps": train.get("steps"),
        "train_loop_s": round(train.get("seconds", 0), 1),
        "config": opts.dpo.model_dump(),
        "answer_ahead": opts.answer_ahead,
        "eval_workers": opts.eval.workers,
    }
    print(json.dumps(out))
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    with open("bench/results/cycle.jsonl", "a") as fh:
        fh.write(json.dumps({**out, "at": datetime.now(UTC).isoformat()}) + "\n")


if __name__ == "__main__":
    main()
