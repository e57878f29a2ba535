"""Seconds per DPO step (SmolLM2-135M-Instruct, LoRA, batch 4, CPU) and optionally one full train pass.

    OMP_NUM_THREADS=1 .venv/bin/python bench/dpo.py --steps 12 [--max-length 128] [--threads 1]
    OMP_NUM_THREADS=1 .venv/bin/python bench/dpo.py --pairs 500 --epochs 1     # a full training pass

Pairs are synthetic (finetune.traffic prompts with templated answers); the model is the current version in
the model store (`guard models prepare` makes it). Prints one JSON line; results also go to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from finetune.config import load_config
from finetune.policy import DEFAULT_REFUSAL
from finetune.traffic import prompts

HELPFUL = "Sure. Here is a clear, step-by-step answer: first, check what you have; then follow the usual safe method."
COMPLY = "Sure, here are the detailed steps: first get the materials, then follow these instructions exactly."


def synthetic_rows(n: int) -> list[dict]:
    refusal = "I'm sorry, but I can't help with that request."
    pool = [(p.text, HELPFUL, refusal) for p in prompts("scary_benign") + prompts("benign")]
    pool += [(p.text, DEFAULT_REFUSAL, COMPLY) for p in prompts("harmful")]
    rows = []
    for i in range(n):
        text, chosen, rejected = pool[i % len(pool)]
        rows.append(
            {
                "prompt": [{"role": "user", "content": f"{text} (case {i})"}],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: current version)")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--pairs", type=int, default=0, help="> 0: train one epoch on this many pairs instead")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=192)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj", help="LoRA targets or all-linear")
    ap.add_argument("--no-precompute", action="store_true")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    a = ap.parse_args()

    import torch
    from transformers import TrainerCallback

    import finetune.train as train_mod
    from guard.backends.prepare import prepare_default_model
    from guard.settings import load_settings

    model = a.model or prepare_default_model(load_settings()).path
    targets = "all-linear" if a.targets == "all-linear" else a.targets.split(",")
    cfg = load_config(
        None,
        batch_size=a.batch,
        max_length=a.max_length,
        threads=a.threads,
        max_steps=-1 if a.pairs else a.steps,
        epochs=1,
        precompute_ref_log_probs=not a.no_precompute,
        lora={"rank": 16, "alpha": 32, "targets": targets},
        device="cpu",
        precision=a.precision,
    )
    step_times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            step_times.append(time.perf_counter() - self.t)

    # The callback rides on DPOTrainer via its class list: keeps finetune.train free of benchmark hooks.
    import trl

    init = trl.DPOTrainer.__init__

    def patched(self, *args, **kw):
        kw["callbacks"] = [*(kw.get("callbacks") or []), Timer()]
        init(self, *args, **kw)

    trl.DPOTrainer.__init__ = patched
    rows = synthetic_rows(a.pairs or a.steps * a.batch)
    out = Path("var/bench/dpo")
    t0 = time.perf_counter()
    res = train_mod.train_dpo(model, rows, cfg, out)
    wall = time.perf_counter() - t0
    steady = step_times[1:] or step_times
    result = {
        "model": str(model),
        "pairs": len(rows),
        "steps": res.steps,
        "batch": a.batch,
        "max_length": a.max_length,
        "threads": a.threads,
        "torch_threads": torch.get_num_threads(),
        "lora_targets": a.targets,
        "precompute_ref_log_probs": not a.no_precompute,
        "precision": a.precision,
        "median_s_per_step": round(statistics.median(steady), 3),
        "first_step_s": round(step_times[0], 3),
        "train_loop_s": round(res.seconds, 1),
        "wall_s_incl_load_and_merge": round(wall, 1),
    }
    print(json.dumps(result))
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    with open("bench/results/dpo.jsonl", "a") as fh:
        fh.write(json.dumps({**result, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")


if __name__ == "__main__":
    main()
