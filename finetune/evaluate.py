"""Step 4a, evaluate: the candidate against the current model on the same fixed suites and held-out pairs.

Metrics per model: refusal rate on benign prompts (over-refusal, incl. scary-word twins), refusal rate on
harmful prompts, preference accuracy (share of held-out pairs with log p(chosen) > log p(rejected)) and mean
margin, perplexity on general prompts' reference answers; across the two: mean per-token KL(current || candidate)
on those answers (the drift guard).

The refusal rates are measured as deployed when a `DeployedView` is given (the suite prompts pass through
triage and the profile's input rails first, as in the proxy: what they refuse counts as refused for both
models, what they rewrite reaches the model rewritten), and always also bare (`bare_*`: the model alone).
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from finetune.answers import AnswerStore, weights_digest
from finetune.deployed import DeployedView, Framed, bare
from finetune.generate import LocalLM, generate_in_processes
from finetune.suitebuild import SUITE_SPEC, build, manifest

SUITES_DIR = Path(__file__).resolve().parent / "suites"


BENIGN_FILES = ("benign_scary", "benign_ordinary", "benign")  # "benign": the shipped small suite
SUITE_FILES = (*BENIGN_FILES, "harmful", "general")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@dataclass
class Suites:
    benign: list[str]
    harmful: list[str]
    general: list[tuple[str, str]]  # (prompt, reference answer)
    held_out: list[dict[str, Any]] = field(default_factory=list)  # TRL rows from eval.jsonl
    benign_kinds: list[str] = field(default_factory=list)  # per benign prompt: its suite (benign_scary, ...)
    manifest: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, kinds: dict[str, list[dict[str, Any]]], held_out: Path | None = None) -> Suites:
        benign = [(k, r["prompt"]) for k in BENIGN_FILES for r in kinds.get(k, [])]
        ho = _read_jsonl(Path(held_out)) if held_out is not None else []
        return cls(
            [p for _, p in benign],
            [r["prompt"] for r in kinds.get("harmful", [])],
            [(r["prompt"], r["reference"]) for r in kinds.get("general", [])],
            ho,
            [k for k, _ in benign],
        )

    @classmethod
    def load(
        cls,
        folder: Path = SUITES_DIR,
        held_out: Path | None = None,
        limit: int | None = None,
        extra: Sequence[Path] = (),
    ) -> Suites:
        """The suites in `folder` (any of benign_scary, benign_ordinary, benign, harmful, general .jsonl), plus
        the users' own suite folders in `extra`, appended kind by kind."""
        kinds = {k: _read_jsonl(Path(folder) / f"{k}.jsonl") for k in SUITE_FILES}
        return cls._with_extra(kinds, {}, None, held_out, limit, extra)

    @classmethod
    def default(
        cls, datasets: Path | None, held_out: Path | None = None, limit: int | None = None, extra: Sequence[Path] = ()
    ) -> Suites:
        """Suites built from the public data sets (finetune/suitebuild.py) when they are there, else the small
        shipped ones; plus the users' own."""
        if datasets is None or not Path(datasets).is_dir():
            return cls.load(held_out=held_out, limit=limit, extra=extra)
        kinds, meta = build(Path(datasets))
        return cls._with_extra(kinds, meta["source_files"], SUITE_SPEC, held_out, limit, extra)

    @classmethod
    def _with_extra(
        cls,
        kinds: dict[str, list[dict[str, Any]]],
        files: dict[str, str],
        spec: Path | None,
        held_out: Path | None,
        limit: int | None,
        extra: Sequence[Path],
    ) -> Suites:
        for folder in extra:
            if not Path(folder).is_dir():
                raise FileNotFoundError(f"suite folder {folder}: no such directory")
            for k in SUITE_FILES:
                kinds.setdefault(k, []).extend(_read_jsonl(Path(folder) / f"{k}.jsonl"))
        kinds = {k: rows[:limit] for k, rows in kinds.items() if rows}
        out = cls.from_rows(kinds, held_out)
        out.manifest = manifest(kinds, spec, files) | {"extra": [str(p) for p in extra]}
        return out


@dataclass
class EvalOptions:
    # A refusal shows in the opening words: cut at 32 tokens instead of 40, the refusal verdict changed on 0 of the
    # current model's 1,060 suite answers and 2 of a candidate's (scripts/answer_truncation.py).
    max_new_tokens: int = 32
    first_sentence: bool = True  # stop an answer once its first sentence is out: that decides refused or not
    batch_size: int = 16
    threads: int = 1
    # Processes that generate answers, whole batches each (so the answers, and the answer store's, are the same
    # as one process's): the second core of a 2-core machine, idle otherwise while the candidate answers.
    workers: int = 2
    # deployed: behind triage + input rails, as served | bare: the model alone
    context: Literal["deployed", "bare"] = "deployed"
    profile: str | None = None  # rails profile of the deployed view (default: the rails dir's default)
    triage: bool = True  # the deployed view includes the classifier (off when the proxy serves without it)
    # Also answer every suite prompt with no rails in front (the `bare_*` rates): a diagnostic, and what the
    # optional `max_bare_harmful_refusal_drop_points` gate reads (the cycle turns it on for that gate). Off, the
    # prompts the rails refuse or rewrite are not generated twice: about a third of the eval's generation.
    model_alone: bool = False
    # Reuse a model's stored answers to conversations it has answered before with these settings
    # (`finetune/answers.py`): the current model's, every cycle after its first.
    reuse_answers: bool = True


IsRefusal = Callable[[Sequence[str]], list[bool]]


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _key(messages: list[dict[str, str]]) -> str:
    return json.dumps(messages, sort_keys=True)


def model_metrics(
    lm: LocalLM, suites: Suites, refusals: IsRefusal, opts: EvalOptions, frames: list[Framed] | None = None
) -> dict[str, Any]:
    prompts = suites.benign + suites.harmful
    frames = frames or bare(prompts)
    alone_too, convs = _conversations(prompts, frames, opts)
    keys = list(convs)
    texts, counts = _answers(lm, [convs[k] for k in keys], opts)
    answers = dict(zip(keys, texts, strict=True))
    refused = dict(zip(keys, refusals([answers[k] for k in keys]), strict=True))
    deployed = [f.blocked_by is not None or refused[_key(f.messages)] for f in frames]
    alone = [refused[_key(_user(t))] for t in prompts] if alone_too else None
    nb = len(suites.benign)
    outcomes = {"benign": deployed[:nb], "harmful": deployed[nb:]}
    if alone is not None:
        outcomes |= {"bare_benign": alone[:nb], "bare_harmful": alone[nb:]}
    m: dict[str, Any] = {f"{k}_refusal_rate": _rate(v) for k, v in outcomes.items()}
    for kind in dict.fromkeys(suites.benign_kinds):
        m[f"{kind}_refusal_rate"] = _rate([d for d, k in zip(deployed, suites.benign_kinds, strict=False) if k == kind])
    m |= {
        "answers": counts,  # how many were generated now and how many reused from this model's store
        "outcomes": outcomes,  # per prompt, in suite order: the gate's paired tests read these
        "samples": [
            {
                "prompt": t,
                "context": f.context,
                "blocked_by": f.blocked_by,
                "answer": f.refusal if f.blocked_by else answers[_key(f.messages)],
                "refused": d,
                **({"bare_answer": answers[_key(_user(t))], "bare_refused": alone[i]} if alone is not None else {}),
            }
            for i, (t, f, d) in enumerate(zip(prompts, frames, deployed, strict=True))
        ],
    }
    if suites.held_out:
        held = [r["prompt"] for r in suites.held_out]
        ch = lm.answer_logps(held, [r["chosen"][-1]["content"] for r in suites.held_out], batch_size=opts.batch_size)
        rj = lm.answer_logps(held, [r["rejected"][-1]["content"] for r in suites.held_out], batch_size=opts.batch_size)
        margins = [c[0] - r[0] for c, r in zip(ch, rj, strict=True)]
        m["pref_accuracy"] = sum(x > 0 for x in margins) / len(margins)
        m["pref_margin"] = sum(margins) / len(margins)
    return m


def _conversations(
    prompts: list[str], frames: list[Framed], opts: EvalOptions
) -> tuple[bool, dict[str, list[dict[str, str]]]]:
    """Each distinct conversation a model answers, once: the one it sees as deployed (a prompt the rails refuse is
    not sent), and the bare prompt too when the models alone are measured (first: whether they are)."""
    alone_too = opts.model_alone or all(f.context == "plain" for f in frames)  # no rails: alone is as deployed
    convs: dict[str, list[dict[str, str]]] = {}
    for text, f in zip(prompts, frames, strict=True):
        if alone_too:
            convs.setdefault(_key(_user(text)), _user(text))
        if f.blocked_by is None:
            convs.setdefault(_key(f.messages), f.messages)
    return alone_too, convs


def answer_ahead(
    model: Path,
    suites: Suites,
    opts: EvalOptions,
    rails_dir: Path | None,
    triage_dir: Path | None,
    spill: Path | None = None,
) -> None:
    """Answer the suites' conversations with `model` into its answer store, and make its drift pass into `spill`,
    so that `compare` reuses both: the cycle runs this for the current model in another process from its start,
    while the pairs are built and the candidate trains."""
    view = deployed_view(opts, rails_dir, triage_dir)
    prompts = suites.benign + suites.harmful
    frames = view.frame(prompts) if view is not None else bare(prompts)
    _, convs = _conversations(prompts, frames, opts)
    lm = LocalLM(model, threads=opts.threads)
    _answers(lm, list(convs.values()), replace(opts, reuse_answers=True))
    if spill is not None:
        Drift(spill).write_reference(lm, suites, opts)


def _answers(lm: LocalLM, convs: list[list[dict[str, str]]], opts: EvalOptions) -> tuple[list[str], dict[str, int]]:
    """The model's answers, and how many were generated now and reused from its store."""

    def generate(todo: Sequence[list[dict[str, str]]]) -> list[str]:
        kw: dict[str, Any] = {"max_new_tokens": opts.max_new_tokens, "first_sentence": opts.first_sentence}
        if opts.workers > 1 and len(todo) > opts.batch_size and lm.device == "cpu":  # a GPU takes one process
            return generate_in_processes(
                lm.path, todo, workers=opts.workers, batch_size=opts.batch_size, threads=opts.threads, **kw
            )
        return lm.generate(todo, batch_size=opts.batch_size, **kw)

    if not opts.reuse_answers:
        return generate(convs), {"generated": len(convs), "reused": 0}
    # Batch size and threads are in the fingerprint too: they decide the batches and the arithmetic's order.
    settings = {k: getattr(opts, k) for k in ("max_new_tokens", "first_sentence", "batch_size", "threads")}
    store = AnswerStore(lm.path, settings)
    return store.answer(convs, generate), store.counts()


def _rate(flags: Sequence[bool]) -> float:
    return sum(flags) / max(len(flags), 1)


def _general_convs(suites: Suites) -> tuple[list[list[dict[str, str]]], list[str]]:
    return [_user(p) for p, _ in suites.general], [a for _, a in suites.general]


class Drift:
    """Perplexity of each model and mean per-token KL(current || candidate) on the general suite's reference
    answers. The current model's per-token log-softmax is spilled to `spill` one batch per file and read back
    while the candidate scores the same batch: held in memory it is answers x tokens x vocabulary (about 3 GB in
    fp16 for the 300 general answers and SmolLM2's 49k vocabulary), twice that with both models. The current
    model's pass can be made ahead (`write_reference`, the cycle does it while the candidate trains): a marker
    beside the spill names the model weights, answers and batches it holds."""

    MARKER = "reference.json"

    def __init__(self, spill: Path) -> None:
        self.spill = spill
        self.kl_total, self.kl_count = 0.0, 0

    def score(self, lm: LocalLM, suites: Suites, opts: EvalOptions, *, reference: bool) -> float:
        """One model's pass; `reference` is the current model (it writes the spill), else the candidate (it
        reads it and adds to the KL). Returns the model's perplexity."""
        import torch

        convs, answers = _general_convs(suites)
        # Batches of similar length (less padding); both models see the same batches, in the same order.
        order = sorted(range(len(convs)), key=lambda i: len(convs[i][0]["content"]) + len(answers[i]))
        convs, answers = [convs[i] for i in order], [answers[i] for i in order]
        nll, tokens, b = 0.0, 0, opts.batch_size
        for i in range(0, len(convs), b):
            lps = lm.answer_logps(convs[i : i + b], answers[i : i + b], batch_size=b, with_logits=True)
            nll -= sum(t for t, _, _ in lps)
            tokens += sum(n for _, n, _ in lps)
            path = self.spill / f"{i}.pt"
            if reference:
                torch.save([lp for _, _, lp in lps], path)
                continue
            for p16, (_, _, q16) in zip(torch.load(path), lps, strict=True):
                p, q = p16.float(), q16.float()
                self.kl_total += float((p.exp() * (p - q)).sum())
                self.kl_count += p.shape[0]
        return math.exp(nll / max(tokens, 1))

    @staticmethod
    def key(model: Path, suites: Suites, opts: EvalOptions) -> str:
        data = json.dumps([weights_digest(model), suites.general, opts.batch_size])
        return hashlib.sha256(data.encode()).hexdigest()

    def write_reference(self, lm: LocalLM, suites: Suites, opts: EvalOptions) -> None:
        self.spill.mkdir(parents=True, exist_ok=True)
        (self.spill / self.MARKER).unlink(missing_ok=True)
        perplexity = self.score(lm, suites, opts, reference=True)
        marker = {"key": self.key(lm.path, suites, opts), "perplexity": perplexity}
        (self.spill / self.MARKER).write_text(json.dumps(marker))

    def reference_perplexity(self, model: Path, suites: Suites, opts: EvalOptions) -> float | None:
        """The current model's perplexity when its pass is already in the spill, else None."""
        try:
            marker = json.loads((self.spill / self.MARKER).read_text())
        except FileNotFoundError:
            return None
        return float(marker["perplexity"]) if marker["key"] == self.key(model, suites, opts) else None

    @property
    def kl(self) -> float:
        return self.kl_total / max(self.kl_count, 1)


def deployed_view(opts: EvalOptions, rails_dir: Path | None, triage_dir: Path | None) -> DeployedView | None:
    """The view the gate measures through; None for `context: bare` or when no rails are configured."""
    if opts.context == "bare" or rails_dir is None:
        return None
    return DeployedView.load(rails_dir, triage_dir if opts.triage else None, opts.profile)


def _evaluate(
    path: Path,
    reference: bool,
    suites: Suites,
    refusals: IsRefusal,
    opts: EvalOptions,
    frames: list[Framed] | None,
    drift: Drift,
) -> dict[str, Any]:
    """One model's metrics and perplexity. Its drift pass runs in a thread beside the answers: those come from
    worker processes on a multi-core CPU, which leaves this process's core idle."""
    lm = LocalLM(path, threads=opts.threads)
    done = drift.reference_perplexity(path, suites, opts) if reference else None
    with ThreadPoolExecutor(1, thread_name_prefix="drift") as pool:
        perplexity = pool.submit(drift.score, lm, suites, opts, reference=reference) if done is None else None
        m = model_metrics(lm, suites, refusals, opts, frames)
        m["general_perplexity"] = perplexity.result() if perplexity is not None else done
    return m


def compare(
    current: Path,
    candidate: Path,
    suites: Suites,
    refusals: IsRefusal,
    opts: EvalOptions | None = None,
    view: DeployedView | None = None,
    spill: Path | None = None,
) -> dict[str, Any]:
    """Evaluate both models (one in memory at a time) and the drift between them; refusal rates as deployed
    behind `view` when given, else of the bare models. `spill`: the drift's folder, where the current model's
    pass may already be (`answer_ahead`); a temporary one when None."""
    opts = opts or EvalOptions()
    frames = view.frame(suites.benign + suites.harmful) if view is not None else None
    out: dict[str, Any] = {
        "current": {"path": str(current)},
        "candidate": {"path": str(candidate)},
        "context": {"kind": "deployed", **view.describe()} if view else {"kind": "bare"},
    }
    if frames is not None:
        nb = len(suites.benign)
        out["context"]["frames"] = {
            part: {c: sum(f.context == c for f in fs) for c in ("blocked", "instructed", "plain")}
            for part, fs in (("benign", frames[:nb]), ("harmful", frames[nb:]))
        }
    with tempfile.TemporaryDirectory(prefix="guard-drift-") as tmp:
        drift = Drift(Path(spill or tmp))
        for name, path in (("current", current), ("candidate", candidate)):
            t0 = time.perf_counter()
            out[name].update(_evaluate(path, name == "current", suites, refusals, opts, frames, drift))
            out[name]["seconds"] = time.perf_counter() - t0
    out["drift"] = {
        "kl_current_candidate": drift.kl,
        "perplexity_ratio": out["candidate"]["general_perplexity"] / out["current"]["general_perplexity"],
    }
    out["suite_sizes"] = {
        "benign": len(suites.benign),
        "harmful": len(suites.harmful),
        "general": len(suites.general),
        "held_out_pairs": len(suites.held_out),
    }
    out["suites"] = suites.manifest
    return out
