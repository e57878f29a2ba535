"""Step 4a, evaluate: the candidate against the current model on the same fixed suites and held-out pairs.

Metrics per model: refusal rate on benign prompts (over-refusal, incl. scary-word twins), refusal rate on
harmful prompts, preference accuracy (share of held-out pairs with log p(chosen) > log p(rejected)) and mean
margin, perplexity on general prompts' reference answers; across the two: mean per-token KL(current || candidate)
on those answers (the drift guard).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune.generate import LocalLM

SUITES_DIR = Path(__file__).resolve().parent / "suites"


@dataclass
class Suites:
    benign: list[str]
    harmful: list[str]
    general: list[tuple[str, str]]  # (prompt, reference answer)
    held_out: list[dict[str, Any]] = field(default_factory=list)  # TRL rows from eval.jsonl

    @classmethod
    def load(cls, folder: Path = SUITES_DIR, held_out: Path | None = None, limit: int | None = None) -> Suites:
        def rows(name: str) -> list[dict[str, Any]]:
            with open(Path(folder) / name, encoding="utf-8") as fh:
                return [json.loads(line) for line in fh if line.strip()][:limit]

        ho: list[dict[str, Any]] = []
        if held_out is not None and Path(held_out).is_file():
            with open(held_out, encoding="utf-8") as fh:
                ho = [json.loads(line) for line in fh if line.strip()]
        return cls([r["prompt"] for r in rows("benign.jsonl")], [r["prompt"] for r in rows("harmful.jsonl")],
                   [(r["prompt"], r["reference"]) for r in rows("general.jsonl")], ho)


@dataclass
class EvalOptions:
    max_new_tokens: int = 48  # a refusal shows in the opening words
    batch_size: int = 8
    threads: int = 1


IsRefusal = Callable[[Sequence[str]], list[bool]]


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def model_metrics(lm: LocalLM, suites: Suites, refusals: IsRefusal, opts: EvalOptions) -> dict[str, Any]:
    answers = lm.generate([_user(t) for t in suites.benign + suites.harmful], max_new_tokens=opts.max_new_tokens,
                          batch_size=opts.batch_size)
    flags = refusals(answers)
    nb = len(suites.benign)
    m: dict[str, Any] = {
        "benign_refusal_rate": sum(flags[:nb]) / max(nb, 1),
        "harmful_refusal_rate": sum(flags[nb:]) / max(len(suites.harmful), 1),
        "samples": [{"prompt": p, "answer": a, "refused": f}
                    for p, a, f in zip(suites.benign + suites.harmful, answers, flags, strict=True)],
    }
    if suites.held_out:
        convs = [r["prompt"] for r in suites.held_out]
        ch = lm.answer_logps(convs, [r["chosen"][-1]["content"] for r in suites.held_out], batch_size=opts.batch_size)
        rj = lm.answer_logps(convs, [r["rejected"][-1]["content"] for r in suites.held_out], batch_size=opts.batch_size)
        margins = [c[0] - r[0] for c, r in zip(ch, rj, strict=True)]
        m["pref_accuracy"] = sum(x > 0 for x in margins) / len(margins)
        m["pref_margin"] = sum(margins) / len(margins)
    return m


def general_logps(lm: LocalLM, suites: Suites, opts: EvalOptions) -> list[Any]:
    return lm.answer_logps([_user(p) for p, _ in suites.general], [a for _, a in suites.general],
                           batch_size=opts.batch_size, with_logits=True)


def perplexity(lps: list[Any]) -> float:
    return math.exp(-sum(t for t, _, _ in lps) / max(sum(n for _, n, _ in lps), 1))


def mean_kl(cur: list[Any], cand: list[Any]) -> float:
    """Mean per-token KL(current || candidate) over the reference answers' positions."""
    total, count = 0.0, 0
    for (_, _, p), (_, _, q) in zip(cur, cand, strict=True):
        total += float((p.exp() * (p - q)).sum())
        count += p.shape[0]
    return total / max(count, 1)


def compare(current: Path, candidate: Path, suites: Suites, refusals: IsRefusal,
            opts: EvalOptions | None = None) -> dict[str, Any]:
    """Evaluate both models (one in memory at a time) and the drift between them."""
    opts = opts or EvalOptions()
    out: dict[str, Any] = {"current": {"path": str(current)}, "candidate": {"path": str(candidate)}}
    general: dict[str, list[Any]] = {}
    for name, path in (("current", current), ("candidate", candidate)):
        lm = LocalLM(path, threads=opts.threads)
        out[name].update(model_metrics(lm, suites, refusals, opts))
        general[name] = general_logps(lm, suites, opts)
        out[name]["general_perplexity"] = perplexity(general[name])
        del lm
    out["drift"] = {
        "kl_current_candidate": mean_kl(general["current"], general["candidate"]),
        "perplexity_ratio": out["candidate"]["general_perplexity"] / out["current"]["general_perplexity"],
    }
    out["suite_sizes"] = {"benign": len(suites.benign), "harmful": len(suites.harmful),
                          "general": len(suites.general), "held_out_pairs": len(suites.held_out)}
    return out
