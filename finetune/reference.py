"""DPO's reference pass: every pair's log-probs under the current model, computed once before the first step.

TRL's `DPOTrainer` (`precompute_ref_log_probs`) runs each prompt twice, once before the chosen answer and once before
the rejected one, in the dataset's order. Prompts are about two thirds of a pair's tokens here (the chat template's
system turn included), and on a CPU that pass was a quarter of the train step. This pass runs each prompt once, keeps
its keys and values, continues it with both answers, and takes pairs in batches of similar length; the log-probs go
back to their rows, where training reads them as it reads TRL's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from finetune.generate import sorted_batches

Row = dict[str, list[int]]  # prompt_ids, chosen_ids, rejected_ids, as TRL's dataset holds them
Score = Callable[[list[Row]], tuple[list[float], list[float]]]  # rows -> chosen, rejected log-prob sums


def _pad(seqs: list[list[int]], value: int) -> Any:
    import torch

    width = max(map(len, seqs))
    return torch.tensor([s + [value] * (width - len(s)) for s in seqs])


def _mask(seqs: list[list[int]]) -> Any:
    return _pad([[1] * len(s) for s in seqs], 0)


def pair_logps(model: Any, rows: list[Row], max_length: int | None, pad_id: int) -> tuple[list[float], list[float]]:
    """Sum of log p(answer | prompt) for each row's chosen and rejected answer, truncated as TRL's collator does
    (prompt + answer to `max_length`, keeping the start). The prompt but its last token runs once, into a cache
    shared by both answers; that last token then predicts each answer's first."""
    import torch

    cap = max_length or 1 << 30
    heads = [r["prompt_ids"][:-1] for r in rows]
    tails: list[list[int]] = []  # per row: [last prompt token + chosen, last prompt token + rejected]
    for r in rows:
        room = cap - len(r["prompt_ids"])
        tails += [r["prompt_ids"][-1:] + r[k][:room] for k in ("chosen_ids", "rejected_ids")]
    device = model.device
    head_mask = _mask(heads).repeat_interleave(2, 0)
    cache = None
    if head_mask.shape[1]:
        out = model(input_ids=_pad(heads, pad_id).to(device), attention_mask=_mask(heads).to(device), use_cache=True)
        cache = out.cache
        cache.batch_repeat_interleave(2)
    ids, tail_mask = _pad(tails, pad_id), _mask(tails)
    starts = torch.tensor([len(h) for h in heads]).repeat_interleave(2)
    logits = model(
        input_ids=ids.to(device),
        attention_mask=torch.cat([head_mask, tail_mask], 1).to(device),
        position_ids=(starts[:, None] + torch.arange(ids.shape[1])[None, :]).to(device),
        cache=cache,
        use_cache=False,
    ).logits
    sums = []
    for j, tail in enumerate(tails):  # one row at a time: in fp32 a whole batch's log-softmax is ~0.5 GB
        n = len(tail) - 1
        lp = torch.log_softmax(logits[j, :n].float(), -1)
        sums.append(float(lp.gather(1, ids[j, 1 : n + 1, None].to(device)).sum()))
    return sums[0::2], sums[1::2]


def with_reference_logps(dataset: Any, score: Score, batch_size: int, max_length: int | None) -> Any:
    """`dataset` with the `ref_chosen_logps` / `ref_rejected_logps` columns TRL's trainer reads."""
    from datasets import Dataset, concatenate_datasets

    ids = dataset.select_columns(["prompt_ids", "chosen_ids", "rejected_ids"])
    cap = max_length or 1 << 30
    lengths = [
        min(cap, len(p) + max(len(c), len(r)))
        for p, c, r in zip(ids["prompt_ids"], ids["chosen_ids"], ids["rejected_ids"], strict=True)
    ]
    chosen = [0.0] * len(ids)
    rejected = [0.0] * len(ids)
    for idx in sorted_batches(lengths, batch_size, longest_first=True):  # a memory error shows at once
        c, r = score([ids[i] for i in idx])
        for i, a, b in zip(idx, c, r, strict=True):
            chosen[i], rejected[i] = a, b
    cols = Dataset.from_dict({"ref_chosen_logps": chosen, "ref_rejected_logps": rejected})
    return concatenate_datasets([dataset, cols], axis=1)


def trainer_class() -> type:
    """TRL's `DPOTrainer` with the pass above on one process; TRL's own pass where it differs in kind
    (distributed ranks, DeepSpeed or FSDP engines, vision data, LD-DPO's split of the answer)."""
    from trl import DPOTrainer
    from trl.trainer.utils import use_adapter

    class SharedPromptDPOTrainer(DPOTrainer):  # type: ignore[misc]
        def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
            acc = self.accelerator
            if acc.num_processes > 1 or self.is_deepspeed_enabled or self.is_fsdp_enabled:
                return super()._precompute_ref_logps(dataset, name, batch_size)
            if self._is_vision_dataset or self.ld_alpha is not None:
                return super()._precompute_ref_logps(dataset, name, batch_size)
            model = self.ref_model or self.model
            unwrapped = acc.unwrap_model(self.model)
            adapters = getattr(unwrapped, "peft_config", None)
            pad_id = self.data_collator.pad_token_id

            def score(rows: list[Row]) -> tuple[list[float], list[float]]:
                import torch

                off = contextlib.nullcontext()
                if self.ref_model is None and adapters is not None:  # the reference is the base, adapter off
                    off = use_adapter(unwrapped, adapter_name="ref" if "ref" in adapters else None)
                with torch.no_grad(), off, acc.autocast():
                    return pair_logps(model, rows, self.args.max_length, pad_id)

            return with_reference_logps(dataset, score, batch_size, self.args.max_length)

    return SharedPromptDPOTrainer
