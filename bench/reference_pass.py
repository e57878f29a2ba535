"""Wall time of DPO's reference pass (every pair's log-probs under the current model, before the first step):
TRL's own pass against the shared-prompt one (finetune/reference.py), on a pairs file the cycle wrote.

    OMP_NUM_THREADS=1 .venv/bin/python bench/reference_pass.py --pairs RUN/pairs/train.jsonl --rounds 2

Both passes run on the same trainer, in turn, each round; the figures are medians, with ours as a ratio
of TRL's, and each pass's error against the same log-probs computed in fp32 (the two passes run under bf16
autocast where the CPU has bf16, and a sum over an answer's tokens carries the rounding of each).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=Path, required=True, help="a cycle's pairs/train.jsonl")
    ap.add_argument("--base", type=Path, default=None, help="model folder (default: the embedded default model)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-sizes", default="4,8,16", help="pairs per batch of the shared-prompt pass")
    a = ap.parse_args()

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOTrainer

    from finetune.config import load_config
    from finetune.pairs import load_rows
    from finetune.reference import pair_logps, trainer_class, with_reference_logps
    from finetune.train import ROW_KEYS, dpo_args, lora_config
    from guard.backends.prepare import prepare_default_model
    from guard.settings import load_settings

    base = a.base or prepare_default_model(load_settings()).path
    cfg = load_config(None, precompute_ref_log_probs=False)
    torch.set_num_threads(cfg.threads)
    tok = AutoTokenizer.from_pretrained(base)
    rows = load_rows(a.pairs)
    trainer = trainer_class()(
        model=AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
        ref_model=None,
        args=dpo_args(cfg, Path("var/bench/reference_pass"), "cpu"),
        train_dataset=Dataset.from_list([{k: r[k] for k in ROW_KEYS} for r in rows]),
        processing_class=tok,
        peft_config=lora_config(cfg),
    )
    data = trainer.train_dataset
    sizes = [int(b) for b in a.batch_sizes.split(",")]
    # name -> (the pass, pairs per batch); TRL's pass at the training batch, as it ran before
    passes: dict[str, tuple[Any, int]] = {"trl": (DPOTrainer._precompute_ref_logps, cfg.batch_size)}
    passes |= {f"shared-b{b}": (type(trainer)._precompute_ref_logps, b) for b in sizes}
    times: dict[str, list[float]] = {k: [] for k in passes}
    logps: dict[str, list[float]] = {}
    for _ in range(a.rounds):
        for name, (run, size) in passes.items():
            t0 = time.perf_counter()
            out = run(trainer, data, "bench", size)
            times[name].append(time.perf_counter() - t0)
            logps[name] = list(out["ref_chosen_logps"]) + list(out["ref_rejected_logps"])
    pad_id = trainer.data_collator.pad_token_id
    with torch.no_grad():  # no autocast: fp32; the fresh LoRA adapter adds zero, so this is the reference
        truth = with_reference_logps(
            data, lambda rows: pair_logps(trainer.model, rows, cfg.max_length, pad_id), 4, cfg.max_length
        )
    exact = list(truth["ref_chosen_logps"]) + list(truth["ref_rejected_logps"])
    err = {k: [abs(x - y) for x, y in zip(v, exact, strict=True)] for k, v in logps.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "pairs": len(data),
        "bf16": bool(trainer.args.bf16),
        "median_s": {k: round(v, 1) for k, v in med.items()},
        "ratio_to_trl": {k: round(v / med["trl"], 3) for k, v in med.items()},
        "abs_error_to_fp32": {
            k: {
                "mean": round(statistics.mean(v), 4),
                "p99": round(sorted(v)[int(0.99 * len(v))], 4),
                "max": round(max(v), 4),
            }
            for k, v in err.items()
        },
        "runs_s": {k: [round(t, 1) for t in v] for k, v in times.items()},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
