"""A local causal LM for the loop's own needs: sampling candidate answers, greedy answers for the eval suites,
and log-probabilities of given answers. Not the serving path (that is guard.backends.local)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Messages = list[dict[str, str]]


class LocalLM:
    def __init__(self, path: Path, threads: int = 1, device: str | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.path = Path(path)
        self.tok = AutoTokenizer.from_pretrained(path)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(self.device).eval()

    def _encode(self, convs: Sequence[Messages]) -> Any:
        texts = [self.tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in convs]
        return self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)

    def generate(
        self,
        convs: Sequence[Messages],
        *,
        max_new_tokens: int = 64,
        sample: bool = False,
        temperature: float = 0.8,
        top_p: float = 0.95,
        batch_size: int = 8,
        seed: int = 0,
        first_sentence: bool = False,
    ) -> list[str]:
        """Answers in the order of `convs`. Batches hold conversations of similar length (less padding);
        `first_sentence` stops each answer once its first sentence is complete (the refusal judgement's need)."""
        import torch

        torch.manual_seed(seed)
        out: dict[int, str] = {}
        for idx in length_batches(convs, batch_size):
            enc = self._encode([convs[i] for i in idx])
            width = enc["input_ids"].shape[1]
            stop = [_first_sentence(self.tok, width)] if first_sentence else None
            with torch.inference_mode():
                ids = self.model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=sample,
                    temperature=temperature if sample else None,
                    top_p=top_p if sample else None,
                    top_k=None,
                    pad_token_id=self.tok.pad_token_id,
                    stopping_criteria=stop,
                )
            texts = self.tok.batch_decode(ids[:, width:], skip_special_tokens=True)
            out.update((i, t.strip()) for i, t in zip(idx, texts, strict=True))
        return [out[i] for i in range(len(convs))]

    def answer_logps(
        self, convs: Sequence[Messages], answers: Sequence[str], *, batch_size: int = 8, with_logits: bool = False
    ) -> list[Any]:
        """Sum of log p(answer tokens | conversation) per pair (and the per-token log-softmax when asked)."""
        import torch

        res: list[Any] = []
        for i in range(0, len(convs), batch_size):
            cb, ab = convs[i : i + batch_size], answers[i : i + batch_size]
            prompts = [self.tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in cb]
            p_ids = [self.tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
            a_ids = [self.tok(a + (self.tok.eos_token or ""), add_special_tokens=False)["input_ids"] for a in ab]
            seqs = [p + a for p, a in zip(p_ids, a_ids, strict=True)]
            width = max(map(len, seqs))
            ids = torch.full((len(seqs), width), self.tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for j, s in enumerate(seqs):
                ids[j, : len(s)] = torch.tensor(s)
                mask[j, : len(s)] = 1
            # Logits only where some answer token is predicted: the vocabulary projection and the log-softmax
            # over 49k entries are a large share of the pass, and prompt positions need neither.
            lo = min(len(p) for p in p_ids) - 1
            keep = torch.arange(lo, width - 1, device=self.device)
            with torch.inference_mode():
                logits = self.model(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device), logits_to_keep=keep
                ).logits
            for j, (p, a) in enumerate(zip(p_ids, a_ids, strict=True)):
                tok_lp = torch.log_softmax(logits[j, len(p) - 1 - lo : len(p) + len(a) - 1 - lo].float(), -1).cpu()
                total = float(tok_lp.gather(1, ids[j, len(p) : len(p) + len(a)].unsqueeze(1)).sum())
                # Half precision: the KL drift guard needs no more, and the gate's 300 general answers are
                # answers x tokens x vocabulary (GBs) for each model.
                res.append((total, len(a), tok_lp.to(torch.float16)) if with_logits else (total, len(a)))
        return res


def length_batches(convs: Sequence[Messages], batch_size: int) -> list[list[int]]:
    """Indices of `convs` in batches of similar length (less padding), as `LocalLM.generate` answers them."""
    return sorted_batches([len(json.dumps(c)) for c in convs], batch_size)


def sorted_batches(lengths: Sequence[int], batch_size: int, *, longest_first: bool = False) -> list[list[int]]:
    """Indices in batches of similar length; equal lengths keep their order."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i] if longest_first else lengths[i], i))
    return [order[b : b + batch_size] for b in range(0, len(order), batch_size)]


_worker_lm: LocalLM | None = None


def _worker_init(path: Path, threads: int) -> None:
    global _worker_lm
    _worker_lm = LocalLM(path, threads=threads)


def _worker_generate(convs: list[Messages], kw: dict[str, Any]) -> list[str]:
    assert _worker_lm is not None
    return _worker_lm.generate(convs, batch_size=len(convs), **kw)


def generate_in_processes(
    path: Path, convs: Sequence[Messages], *, workers: int, batch_size: int, threads: int = 1, **kw: Any
) -> list[str]:
    """Greedy answers as `LocalLM(path).generate` gives them, its batches shared out among `workers` processes
    (torch's threads scale poorly on small batches; processes do not share a thread pool). Each batch is
    answered whole by one process, so every answer is the one a single process gives."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    batches = length_batches(convs, batch_size)
    ctx = multiprocessing.get_context("spawn")
    out: dict[int, str] = {}
    with ProcessPoolExecutor(workers, ctx, initializer=_worker_init, initargs=(path, threads)) as pool:
        # Longest batches first: the last ones to finish are then the short ones.
        jobs = [(idx, pool.submit(_worker_generate, [convs[i] for i in idx], kw)) for idx in reversed(batches)]
        for idx, job in jobs:
            out.update(zip(idx, job.result(), strict=True))
    return [out[i] for i in range(len(convs))]


_SENTENCE_END = re.compile(r"[.!?:](?:\s|$)|\n")
_MIN_SENTENCE_CHARS = 40  # "Sure!" alone decides nothing; "I'm sorry, but I can't help with that." does


def _first_sentence(tok: Any, prompt_width: int) -> Any:
    """A transformers stopping criterion, per row: done once the answer has a sentence end past the minimum."""
    import torch
    from transformers import StoppingCriteria

    class FirstSentence(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            texts = tok.batch_decode(input_ids[:, prompt_width:], skip_special_tokens=True)
            done = [_SENTENCE_END.search(t.strip(), _MIN_SENTENCE_CHARS) is not None for t in texts]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return FirstSentence()
