"""Step 3, train: TRL `DPOTrainer` with a PEFT LoRA adapter on the current model; the reference is the base
with the adapter disabled. Writes `adapter/` (for export, e.g. vLLM LoRA) and `merged/` (a plain transformers
folder the local backend loads). Multi-GPU: `accelerate launch --config_file deploy/accelerate/multi_gpu.yaml
-m finetune.train --base ... --pairs ... --out ...`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune.config import DPOSettings, load_config
from finetune.pairs import load_rows
from finetune.reference import trainer_class
from guard.accel import cpu_has_bf16

ROW_KEYS = ("prompt", "chosen", "rejected")


@dataclass
class TrainResult:
    out_dir: Path
    adapter_dir: Path
    merged_dir: Path
    steps: int
    seconds: float
    seconds_per_step: float
    log_history: list[dict[str, Any]] = field(default_factory=list)


def _device(cfg: DPOSettings) -> str:
    import torch

    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.device


def loss_terms(cfg: DPOSettings) -> tuple[list[str], list[float]]:
    """TRL's combined loss: the preference loss, plus the chosen answers' NLL when `sft_weight` > 0."""
    if cfg.sft_weight > 0:
        return [cfg.loss_type, "sft"], [1.0, cfg.sft_weight]
    return [cfg.loss_type], [1.0]


def dpo_args(cfg: DPOSettings, out_dir: Path, device: str) -> Any:
    from trl import DPOConfig

    on_cpu = device == "cpu"
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and (not on_cpu or cpu_has_bf16()))
    losses, weights = loss_terms(cfg)
    return DPOConfig(
        output_dir=str(out_dir / "trainer"),
        beta=cfg.beta,
        loss_type=losses,
        loss_weights=weights,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        max_length=cfg.max_length,
        warmup_steps=cfg.warmup_ratio,
        seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        save_strategy="no",
        report_to="none",
        precompute_ref_log_probs=cfg.precompute_ref_log_probs,
        precompute_ref_batch_size=cfg.ref_batch_size,
        # TRL defaults to bf16 + gradient checkpointing; on CPU bf16 errors out and checkpointing only recomputes.
        use_cpu=on_cpu,
        bf16=bf16,
        gradient_checkpointing=False,
        dataloader_num_workers=0,
    )


def lora_config(cfg: DPOSettings) -> Any:
    if cfg.lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora.rank,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.targets,
        task_type="CAUSAL_LM",
    )


def train_dpo(base: Path, rows: list[dict[str, Any]], cfg: DPOSettings, out_dir: Path) -> TrainResult:
    """Train on TRL conversational rows; `base` is a transformers folder (the currently served version)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not rows:
        raise ValueError("no training pairs")
    device = _device(cfg)
    if device == "cpu":
        torch.set_num_threads(cfg.threads)
    out_dir = Path(out_dir)
    tok = AutoTokenizer.from_pretrained(base)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    data = Dataset.from_list([{k: r[k] for k in ROW_KEYS} for r in rows])
    trainer = trainer_class()(
        model=model,
        ref_model=None,
        args=dpo_args(cfg, out_dir, device),
        train_dataset=data,
        processing_class=tok,
        peft_config=lora_config(cfg),
    )
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    steps = int(trainer.state.global_step)
    adapter_dir, merged_dir = out_dir / "adapter", out_dir / "merged"
    if trainer.accelerator.is_main_process:
        _save(trainer.model, tok, adapter_dir, merged_dir, lora=cfg.lora is not None)
        (out_dir / "train_log.json").write_text(
            json.dumps({"steps": steps, "seconds": seconds, "log_history": trainer.state.log_history}, indent=2)
        )
    return TrainResult(
        out_dir, adapter_dir, merged_dir, steps, seconds, seconds / max(steps, 1), list(trainer.state.log_history)
    )


def _save(model: Any, tok: Any, adapter_dir: Path, merged_dir: Path, *, lora: bool) -> None:
    import torch

    model = getattr(model, "module", model)
    if lora:
        model.save_pretrained(adapter_dir)
        tok.save_pretrained(adapter_dir)
        model = model.merge_and_unload()
    merged = model.to(torch.float32)
    merged.save_pretrained(merged_dir)
    tok.save_pretrained(merged_dir)


def main(argv: list[str] | None = None) -> None:
    """Entry point for `python -m finetune.train` / `accelerate launch -m finetune.train`."""
    p = argparse.ArgumentParser(description="DPO + LoRA on a pairs file")
    p.add_argument("--base", type=Path, required=True)
    p.add_argument("--pairs", type=Path, required=True, help="train.jsonl from `guard prefs build`")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--config", type=Path, default=None)
    a = p.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    res = train_dpo(a.base, load_rows(a.pairs), load_config(a.config), a.out)
    print(f"{res.steps} steps in {res.seconds:.1f}s ({res.seconds_per_step:.2f} s/step) -> {res.merged_dir}")


if __name__ == "__main__":
    main()
