"""Tune the DPO settings on one demo run's data without re-running the whole demo (scripts/demo_loop.py).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/tune_pairs.py --work var/demoA --pairs var/pairsB \\
        --build --max-refuse-share 1.0 --out var/t6 --set epochs=2 learning_rate=3e-4 sft_weight=1

`--build` rebuilds the pairs from WORK's exchange store with the cycle's pair step (the window since WORK's
watermark, i.e. the replayed traffic and its reviews); without it PAIRS must hold train.jsonl and eval.jsonl.
Then: train a candidate on top of WORK's current version (the over-cautious deployment), compare on the gate's
suites (`--context deployed`, the default: behind WORK/triage and the default rails, as the demo serves), apply
the default gates, and answer the demo's held-out traffic prompts directly (greedy, 48 new tokens, the model
alone: `held_out_*_bare`). Prints and writes OUT/tune.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build_pairs(
    work: Path, out: Path, max_refuse_share: float, caution_anchors: int | None = None, window: Path | None = None
) -> dict:
    from finetune import pairs as pairs_mod
    from finetune.collect import Watermark, collect
    from finetune.cycle import CycleOptions, pair_sources
    from finetune.registry import Registry
    from guard.settings import DEFAULT_MODEL, load_settings
    from guard.store.db import make_engine

    db_url = f"sqlite:///{work / 'guard.db'}"
    opts = CycleOptions(
        model=DEFAULT_MODEL,
        state_dir=work / "finetune",
        models_root=work / "models",
        db_url=db_url,
        rails_dir=load_settings().rails_dir,
        settle=timedelta(0),
        triage_dir=work / "triage" if (work / "triage").is_dir() else None,
    )
    opts.pairs.candidates = 6  # as the demo
    opts.pairs.max_refuse_share = max_refuse_share
    if caution_anchors is not None:
        opts.pairs.caution_anchors = caution_anchors
    current = Registry(opts.models_root, opts.model).current()
    since, until = Watermark(opts.state_dir, opts.model).get(), datetime.now(UTC)
    if window is not None:  # the same records as a finished cycle's pairs (its manifest's window)
        man = json.loads((window / "manifest.json").read_text())
        since, until = datetime.fromisoformat(man["since"]), datetime.fromisoformat(man["until"])
    col = collect(make_engine(db_url), since=since, until=until, model=opts.model)
    src, _ = pair_sources(opts, current.path)
    return pairs_mod.write(pairs_mod.build(col, src, opts.pairs), out, opts.pairs, model=opts.model)["counts"]


def parse_overrides(items: list[str]) -> dict:
    import yaml

    from finetune.config import load_config

    top: dict = {}
    lora: dict = {}
    for item in items:
        key, _, raw = item.partition("=")
        value = yaml.safe_load(raw)
        if key.startswith("lora."):
            lora[key.removeprefix("lora.")] = value
        else:
            top[key] = value
    if lora:
        shipped = load_config(None).lora
        top["lora"] = (shipped.model_dump() if shipped else {}) | lora
    return top


def main() -> None:
    from finetune import traffic as tr
    from finetune.config import load_config
    from finetune.evaluate import EvalOptions, Suites, compare, deployed_view
    from finetune.gates import decide
    from finetune.generate import LocalLM
    from finetune.pairs import load_rows
    from finetune.registry import Registry
    from finetune.train import train_dpo
    from guard.refusal import shipped
    from guard.settings import DEFAULT_MODEL, SHIPPED_RAILS

    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, required=True, help="a demo_loop.py work folder")
    ap.add_argument("--pairs", type=Path, required=True)
    ap.add_argument("--build", action="store_true")
    ap.add_argument("--max-refuse-share", type=float, default=0.6)
    ap.add_argument("--caution-anchors", type=int, help="with --build: PairOptions.caution_anchors (its default)")
    ap.add_argument("--window", type=Path, help="with --build: a run's pairs folder whose window to rebuild")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--set",
        nargs="*",
        default=[],
        help="DPO config overrides, KEY=VALUE with YAML values; lora.KEY for the adapter "
        "(e.g. lora.targets=all-linear lora.rank=32)",
    )
    ap.add_argument(
        "--context",
        choices=["deployed", "bare"],
        default="deployed",
        help="gate suites behind WORK/triage and the default rails (as the demo serves), or bare",
    )
    a = ap.parse_args()
    work = a.work.resolve()
    out: dict = {}
    if a.build:
        out["pair_counts"] = build_pairs(work, a.pairs, a.max_refuse_share, a.caution_anchors, a.window)
    overrides = parse_overrides(a.set)
    current = Registry(work / "models", DEFAULT_MODEL).current().path
    t0 = time.perf_counter()
    cand = train_dpo(current, load_rows(a.pairs / "train.jsonl"), load_config(None, **overrides), a.out).merged_dir
    out["train_s"] = time.perf_counter() - t0
    opts = EvalOptions(context=a.context)
    triage = work / "triage" if (work / "triage").is_dir() else None
    rep = compare(
        current,
        cand,
        Suites.load(held_out=a.pairs / "eval.jsonl"),
        shipped().flags,
        opts,
        deployed_view(opts, SHIPPED_RAILS, triage),
    )
    verdict = decide(rep)
    out |= {
        "config": overrides,
        "drift": rep["drift"],
        "passed": verdict.passed,
        "reasons": verdict.reasons,
        "context": rep["context"],
        "suite": {
            k: {
                m: rep[k][m]
                for m in (
                    "benign_refusal_rate",
                    "harmful_refusal_rate",
                    "bare_benign_refusal_rate",
                    "bare_harmful_refusal_rate",
                )
                if m in rep[k]  # the models alone only with EvalOptions.model_alone
            }
            for k in ("current", "candidate")
        },
    }
    held = [p for k in tr.KINDS for p in tr.prompts(k) if p.held_out]
    for name, path in (("current", current), ("candidate", cand)):
        answers = LocalLM(path).generate([[{"role": "user", "content": p.text}] for p in held], max_new_tokens=48)
        refused = shipped().flags(answers)
        benign = [r for r, p in zip(refused, held, strict=True) if p.kind != "harmful"]
        harmful = [r for r, p in zip(refused, held, strict=True) if p.kind == "harmful"]
        out[f"held_out_{name}_bare"] = {
            "over_refusal": sum(benign) / len(benign),
            "harmful_refusal": sum(harmful) / len(harmful),
        }
    (a.out / "tune.json").write_text(json.dumps(out, indent=2))
    (a.out / "samples.json").write_text(json.dumps({k: rep[k]["samples"] for k in ("current", "candidate")}, indent=1))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
