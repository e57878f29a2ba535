from __future__ import annotations

from pathlib import Path

import pytest

from finetune.config import load_config
from finetune.generate import sorted_batches


def uneven_rows(n: int) -> list[dict]:
    """Pairs whose prompts and answers differ in length, so that batches by length differ from batches in order."""
    return [
        {
            "prompt": [{"role": "user", "content": f"How do I stop runaway process {i}? " * (1 + i % 4)}],
            "chosen": [{"role": "assistant", "content": f"Send it signal {i} with kill. " * (1 + (i * 3) % 5)}],
            "rejected": [{"role": "assistant", "content": "I can't help with that." + " Sorry." * (i % 3)}],
        }
        for i in range(n)
    ]


def test_sorted_batches_hold_every_row_once_longest_or_shortest_first() -> None:
    assert sorted_batches([3, 9, 1, 9, 5], 2, longest_first=True) == [[1, 3], [4, 0], [2]]
    assert sorted_batches([3, 9, 1, 9, 5], 2) == [[2, 0], [4, 1], [3]]


@pytest.mark.parametrize("max_length", [256, 72])  # 72: most answers cut, as the collator cuts them
def test_shared_prompt_reference_pass_gives_each_pair_the_log_probs_trls_own_pass_gives_it(
    tiny_lm: Path, tmp_path: Path, max_length: int
) -> None:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOTrainer

    from finetune.reference import trainer_class
    from finetune.train import ROW_KEYS, dpo_args, lora_config

    # fp32: the two passes pad differently, and bf16 would round the same sums differently
    cfg = load_config(
        None,
        precision="fp32",
        precompute_ref_log_probs=False,
        batch_size=2,
        max_length=max_length,
        lora={"rank": 4, "alpha": 8, "targets": ["q_proj", "v_proj"]},
    )
    rows = uneven_rows(9)
    trainer = trainer_class()(
        model=AutoModelForCausalLM.from_pretrained(tiny_lm),
        ref_model=None,
        args=dpo_args(cfg, tmp_path, "cpu"),
        train_dataset=Dataset.from_list([{k: r[k] for k in ROW_KEYS} for r in rows]),
        processing_class=AutoTokenizer.from_pretrained(tiny_lm),
        peft_config=lora_config(cfg),
    )
    data = trainer.train_dataset
    ours = trainer._precompute_ref_logps(data, "train", 4)
    theirs = DPOTrainer._precompute_ref_logps(trainer, data, "train", 2)
    for col in ("ref_chosen_logps", "ref_rejected_logps"):
        assert list(ours[col]) == pytest.approx(list(theirs[col]), abs=1e-3)
    # Distinct values per row: a pass that put a batch's log-probs on the wrong rows would fail the comparison.
    pairs = zip(theirs["ref_chosen_logps"], theirs["ref_rejected_logps"], strict=True)
    assert len({(round(c, 2), round(r, 2)) for c, r in pairs}) == len(data) > 3
    assert ours["prompt_ids"] == theirs["prompt_ids"]
