"""Step 2, pairs: turn collected exchanges into TRL preference rows (`prompt` messages, `chosen`, `rejected`).

Two directions: "help_more" (the model refused a benign request) and "refuse_more" (it complied with a harmful
one), plus "keep_refusing" anchors: a refusal the reviewer marked correct, or one the proxy itself judged right (the
model refused a request the classifier or the input rails called harmful), against a compliant answer sampled from
the current model. Without the anchors the help_more pairs also wear down refusals the model got right (demo runs
6 and 7: the refusals lost on the gate's harmful suite were exactly on "How can I ..." requests the model had
refused correctly, the same phrasing as the help_more prompts). Too many refusal-side pairs teach over-refusal,
so their share is capped. A chosen answer is never invented: when no reviewer correction exists and no sampled
candidate passes, the exchange goes to review.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from finetune.batching import Deferred
from finetune.collect import Collected
from finetune.openai_prefs import openai_row
from finetune.policy import CautionFor, OutputCheck, RefusalFor, accept_all, default_refusal, no_caution
from guard.records import ExchangeRecord

HELP_MORE, REFUSE_MORE, KEEP_REFUSING = "help_more", "refuse_more", "keep_refusing"
CAUTION_ANCHOR = "caution_anchor"
REFUSAL_SIDE = (REFUSE_MORE, KEEP_REFUSING, CAUTION_ANCHOR)  # in the order the balance cap keeps them
HELPFUL_INSTRUCTION = (
    "You are a helpful assistant. The user's request is benign: answer it directly, accurately and "
    "completely. Do not refuse and do not lecture."
)
# Sampling the rejected side of a keep_refusing pair: what the model says when pushed to comply.
COMPLY_INSTRUCTION = "Answer the user's request directly and completely. Do not refuse and do not lecture."
# Review labels (guard.store): correct | false_positive | over_refusal | unsafe
NEGATIVE_RATING_MAX = -1  # guard.store: a negative rating means a bad answer

Sampler = Callable[[list[dict[str, str]], int], list[str]]  # (messages, n) -> candidate answers
Embed = Callable[[Sequence[str]], np.ndarray]  # L2-normalised rows
Mask = Callable[[str], str]
Revise = Callable[[list[dict[str, str]], str, str | None], str | None]  # (messages, refusal, profile) -> rewrite


@dataclass
class Pair:
    prompt: list[dict[str, str]]
    chosen: str
    rejected: str
    direction: str
    source: str  # auto | review | feedback
    flag: str  # the flag or review label that produced it
    exchange_id: str
    profile: str | None = None
    chosen_by: str = ""  # reviewer | revision (critique and revise) | sample (best of N) | policy | model

    @property
    def prompt_text(self) -> str:
        return "\n".join(f"{m['role']}: {m['content']}" for m in self.prompt)

    @property
    def prompt_hash(self) -> str:
        return hashlib.sha256(" ".join(self.prompt_text.lower().split()).encode()).hexdigest()

    def row(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "chosen": [{"role": "assistant", "content": self.chosen}],
            "rejected": [{"role": "assistant", "content": self.rejected}],
            "direction": self.direction,
            "source": self.source,
            "flag": self.flag,
            "exchange_id": self.exchange_id,
            "profile": self.profile,
            "chosen_by": self.chosen_by,
        }


@dataclass
class PairOptions:
    candidates: int = 4  # N sampled answers per over-refused request
    max_refuse_share: float = 0.5  # refusal-side pairs (REFUSAL_SIDE) / all pairs
    # A floor on the same share: past it, help_more pairs are dropped (auto ones first). A set that is mostly
    # help_more wears down refusals the model had right: issue 17's seed 2 (35 refusal-side pairs against 36
    # help_more, share 0.49) lost 2.9 points of harmful refusal where seeds 0 and 1 (0.575, 0.556) gained.
    # 0 = off; it also empties a set with no refusal-side pair at all.
    min_refuse_share: float = 0.0
    # Anchor pairs from the model's correct refusals: reviewed as correct, or unreviewed ones the proxy judged
    # harmful (reviews are sparse in production, and unreviewed unsafe compliances already make refuse_more pairs).
    keep_refusing: bool = True
    near_dup_threshold: float = 0.95  # cosine similarity of prompt embeddings
    eval_percent: int = 10
    min_answer_chars: int = 20
    # Caution anchors: at most this many per build (0 = off); each costs one sample. More of them make the model
    # decline more in the caution zone, benign requests there included (finetune/README.md: t13, t14, ta10, ta20).
    # 40, not 20: with the built suites the help_more pairs cost more harmful refusals outside the caution zone
    # than 19 anchors won back inside it (issue 17, seed 0); past this budget `max_refuse_share` is what limits
    # them, so the refusal side grows with the help_more side instead of staying at a fixed count.
    caution_anchors: int = 40


@dataclass
class PairSet:
    pairs: list[Pair]
    pending: list[dict[str, Any]]  # exchanges left for human review (no acceptable chosen answer)
    dropped: Counter[str] = field(default_factory=Counter)


@dataclass
class PairSources:
    """The parts of the system the builder needs, injectable so tests and the CLI wire real ones."""

    refusal_for: RefusalFor = default_refusal
    is_refusal: Callable[[str], bool] = lambda text: False
    output_ok: OutputCheck = accept_all
    sample: Sampler | None = None
    embed: Embed | None = None
    mask: Mask | None = None
    caution_for: CautionFor = no_caution
    revise: Revise | None = None  # critique and revise against the profile's principles (finetune/revise.py)
    # Answers the generation requests `sample` and `revise` deferred (finetune/batching.py); returns how many.
    flush: Callable[[], int] | None = None


def _prompt(rec: ExchangeRecord) -> list[dict[str, str]]:
    """The conversation the model answered: as the input rails rewrote it (their safe-completion instruction
    included), else as the client sent it."""
    msgs = [{"role": m.role, "content": m.content} for m in (rec.model_messages or rec.messages)]
    while msgs and msgs[-1]["role"] == "assistant":
        msgs.pop()  # the prompt ends with the user turn the model answered
    return msgs


def _answer(rec: ExchangeRecord) -> str:
    """The model's answer; a tool-call answer as its calls, `name(arguments)` one a line."""
    text = rec.model_response or rec.response
    return text or "\n".join(f"{c.name}({c.arguments})" for c in rec.tool_calls)


def _samples(messages: list[dict[str, str]], instruction: str, src: PairSources, opts: PairOptions) -> list[str]:
    """N samples from the current model under `instruction` that are long enough and not refusals."""
    if src.sample is None:
        return []
    prompt = [{"role": "system", "content": instruction}, *[m for m in messages if m["role"] != "system"]]
    return [
        c.strip()
        for c in src.sample(prompt, opts.candidates)
        if len(c.strip()) >= opts.min_answer_chars and not src.is_refusal(c)
    ]


def _acceptable(answer: str | None, profile: str | None, src: PairSources, opts: PairOptions) -> bool:
    """A proposed `chosen` must be long enough, pass the output rails and not be a refusal."""
    return bool(
        answer
        and len(answer.strip()) >= opts.min_answer_chars
        and src.output_ok(answer, profile)
        and not src.is_refusal(answer)
    )


def helpful_answer(
    messages: list[dict[str, str]], refusal: str, profile: str | None, src: PairSources, opts: PairOptions
) -> tuple[str, str] | None:
    """(answer, how it was made) for a wrongly refused request: the refusal rewritten against the profile's
    principles when that passes the checks, else the best of N samples; None when neither does."""
    if src.revise is not None:
        revised = src.revise(messages, refusal, profile)
        if revised is not None and _acceptable(revised, profile, src, opts):
            return revised.strip(), "revision"
    best = best_candidate(messages, profile, src, opts)
    return (best, "sample") if best is not None else None


def best_candidate(
    messages: list[dict[str, str]], profile: str | None, src: PairSources, opts: PairOptions
) -> str | None:
    """Best of N helpful samples that pass the output rails and are not refusals; None when none passes."""
    ok = [c for c in _samples(messages, HELPFUL_INSTRUCTION, src, opts) if src.output_ok(c, profile)]
    # Longest passing answer: for a wrongly refused request the fuller answer is the more helpful one.
    return max(ok, key=len) if ok else None


def keep_refusing_pair(
    rec: ExchangeRecord,
    src: PairSources,
    opts: PairOptions,
    correction: str | None = None,
    *,
    source: str = "review",
    flag: str = "correct",
) -> Pair | None:
    """A correct refusal (reviewed, or judged so by the proxy: `source` "auto") -> chosen = that refusal (or the
    reviewer's text), rejected = the longest compliant sample from the current model; None when the model would
    not comply even when pushed (nothing to contrast) or the answer was not a refusal."""
    prompt, answer = _prompt(rec), _answer(rec)
    if not prompt or not (("model_refused" in rec.flags) or src.is_refusal(answer)):
        return None
    complied = _samples(prompt, COMPLY_INSTRUCTION, src, opts)
    if not complied:
        return None
    return Pair(
        prompt,
        correction or answer,
        max(complied, key=len),
        KEEP_REFUSING,
        source,
        flag,
        rec.exchange_id,
        rec.profile,
        "reviewer" if correction else "model",
    )


def refused_as_harmful(rec: ExchangeRecord) -> bool:
    """The model itself refused a request the proxy judged harmful: guard.pipeline.derive_flags sets
    `over_refused` on a refusal only when neither the classifier nor an input rail called the request harmful, so
    a refusal without it was judged right. Rails refusals (the model never saw the request) and answers an
    output rail stopped are not the model's refusals."""
    flags = set(rec.flags)
    return "model_refused" in flags and not flags & {"over_refused", "blocked_input", "blocked_output"}


def _blocking_label(rec: ExchangeRecord) -> str | None:
    return next(
        (
            d.rail.removeprefix("label:")
            for d in rec.decisions
            if d.stage == "input" and d.result == "block" and d.rail.startswith("label:")
        ),
        None,
    )


def caution_anchor(
    rec: ExchangeRecord, src: PairSources, opts: PairOptions, correction: str | None = None
) -> Pair | None:
    """A request the input rails refused, reviewed as correct -> the same request under the instruction its
    label's caution tier gives; chosen = the rails' refusal, rejected = the current model's answer there when it
    complies. Teaches the instruction's "decline if ..." clause, so a similar request scored just under the
    refuse tier is still declined. None without a caution tier, a sampler, or a compliant answer."""
    label = _blocking_label(rec)
    instruction = src.caution_for(rec.profile, label) if label else None
    prompt = _prompt(rec)
    if instruction is None or src.sample is None or not prompt:
        return None
    if prompt[0]["role"] == "system":  # as the rails add it: appended to the client's own system message
        prompt = [{"role": "system", "content": f"{prompt[0]['content']}\n\n{instruction}"}, *prompt[1:]]
    else:
        prompt = [{"role": "system", "content": instruction}, *prompt]
    complied = [
        a.strip() for a in src.sample(prompt, 1) if len(a.strip()) >= opts.min_answer_chars and not src.is_refusal(a)
    ]
    if not complied:
        return None
    return Pair(
        prompt,
        correction or rec.response,
        complied[0],
        CAUTION_ANCHOR,
        "review",
        "correct",
        rec.exchange_id,
        rec.profile,
        "reviewer" if correction else "policy",
    )


def _pending(rec: ExchangeRecord, reason: str) -> dict[str, Any]:
    return {
        "exchange_id": rec.exchange_id,
        "reason": reason,
        "prompt": _prompt(rec),
        "answer": _answer(rec),
        "flags": rec.flags,
        "profile": rec.profile,
    }


def pair_for(
    rec: ExchangeRecord, kind: str, source: str, src: PairSources, opts: PairOptions, correction: str | None = None
) -> Pair | dict[str, Any] | None:
    """One exchange -> a Pair, a pending-review entry, or None when it carries no usable signal."""
    prompt, answer = _prompt(rec), _answer(rec)
    if not prompt or not answer.strip():
        return None
    if kind in {"over_refused", "over_refusal", "false_positive"}:
        rejected = rec.response if kind == "false_positive" else answer
        made = (correction, "reviewer") if correction else helpful_answer(prompt, rejected, rec.profile, src, opts)
        if made is None:
            return _pending(rec, "no candidate answer passed the rails and refusal checks")
        return Pair(prompt, made[0], rejected, HELP_MORE, source, kind, rec.exchange_id, rec.profile, made[1])
    if kind in {"unsafe_compliance", "blocked_output", "unsafe"}:
        chosen, by = (
            (correction, "reviewer") if correction else (src.refusal_for(rec.profile, rec.triage_labels), "policy")
        )
        return Pair(prompt, chosen, answer, REFUSE_MORE, source, kind, rec.exchange_id, rec.profile, by)
    return None


Outcome = Pair | dict[str, Any] | str  # a pair, a pending-review entry, or why the record was dropped


def raw_pairs(col: Collected, src: PairSources, opts: PairOptions) -> PairSet:
    """Reviewer labels first (they override automatic flags), then feedback, then the flags themselves. Records
    waiting on generation the sources deferred (finetune/batching.py) are built again once it is answered."""
    while True:
        out, deferred = _pass(col, src, opts)
        if not deferred:
            return out
        if src.flush is None or not src.flush():
            raise RuntimeError(f"{deferred} records wait on generation that nothing answers")


def _pass(col: Collected, src: PairSources, opts: PairOptions) -> tuple[PairSet, int]:
    out = PairSet([], [])
    cautions = deferred = 0
    for ex_id, rec in col.records.items():
        if ex_id in col.disputed:  # two reviewers disagree: neither label is trusted until they agree
            out.dropped["disputed_review"] += 1
            continue
        negative = (
            any(fb.rating <= NEGATIVE_RATING_MAX for fb in col.feedback.get(ex_id, []))
            or "negative_feedback" in rec.flags
        )
        try:
            res = record_outcome(rec, col.reviews.get(ex_id), negative, src, opts, cautions < opts.caution_anchors)
        except Deferred:
            deferred += 1
            continue
        if isinstance(res, Pair):
            out.pairs.append(res)
            cautions += res.direction == CAUTION_ANCHOR
        elif isinstance(res, str):
            out.dropped[res] += 1
        else:
            out.pending.append(res)
    return out, deferred


def record_outcome(
    rec: ExchangeRecord, review: Any, negative: bool, src: PairSources, opts: PairOptions, caution_room: bool
) -> Outcome:
    """One record's pair, pending-review entry or reason to drop; `negative`: it has a thumbs-down."""
    if review is not None:
        if review.label == "correct":
            if "blocked_input" in rec.flags:
                # The input rails refused it; the model never saw the request, so the bare prompt teaches it
                # nothing (training it to refuse that fights the help_more pairs). The request as the caution
                # zone would have framed it does (a caution anchor), within the per-build budget.
                anchor = caution_anchor(rec, src, opts, review.correction) if caution_room else None
                return anchor or "blocked_by_rails"
            anchor = keep_refusing_pair(rec, src, opts, review.correction) if opts.keep_refusing else None
            return anchor or "reviewed_correct"
        res = pair_for(rec, review.label, "review", src, opts, correction=review.correction)
    elif negative:
        # A thumbs-down on a refusal means "you should have helped"; on an answer it needs a human.
        refused = "model_refused" in rec.flags or src.is_refusal(_answer(rec))
        res = (
            pair_for(rec, "over_refused", "feedback", src, opts)
            if refused
            else _pending(rec, "negative feedback on an answer")
        )
    else:
        kind = next((f for f in ("unsafe_compliance", "blocked_output", "over_refused") if f in rec.flags), None)
        res = pair_for(rec, kind, "auto", src, opts) if kind else None
        if kind is None and "flagged_for_review" in rec.flags:
            res = _pending(rec, "flagged for review")  # a rail asked for a human first
        elif kind is None and opts.keep_refusing and refused_as_harmful(rec):
            # None: the model would not comply even when pushed, nothing to contrast
            return keep_refusing_pair(rec, src, opts, source="auto", flag="model_refused") or "judged_correct"
    return res if res is not None else "no_signal"


def mask_pairs(pairs: list[Pair], mask: Mask | None) -> list[Pair]:
    if mask is None:
        return pairs
    return [
        Pair(
            [{**m, "content": mask(m["content"])} for m in p.prompt],
            mask(p.chosen),
            mask(p.rejected),
            p.direction,
            p.source,
            p.flag,
            p.exchange_id,
            p.profile,
            p.chosen_by,
        )
        for p in pairs
    ]


_PRIORITY = {"review": 0, "feedback": 1, "auto": 2}


def dedup(pairs: list[Pair], embed: Embed | None, threshold: float, dropped: Counter[str]) -> list[Pair]:
    """Exact prompt duplicates, then near duplicates by embedding cosine; reviewed pairs win ties."""
    ordered = sorted(pairs, key=lambda p: (_PRIORITY.get(p.source, 9), p.prompt_hash))
    seen: set[str] = set()
    unique = []
    for p in ordered:
        if p.prompt_hash in seen:
            dropped["duplicate"] += 1
            continue
        seen.add(p.prompt_hash)
        unique.append(p)
    if embed is None or len(unique) < 2:
        return unique
    vecs = np.asarray(embed([p.prompt[-1]["content"] for p in unique]), dtype=np.float32)
    keep: list[int] = []
    for i in range(len(unique)):
        if keep and float(np.max(vecs[keep] @ vecs[i])) >= threshold:
            dropped["near_duplicate"] += 1
            continue
        keep.append(i)
    return [unique[i] for i in keep]


def balance(
    pairs: list[Pair], max_refuse_share: float, dropped: Counter[str], min_refuse_share: float = 0.0
) -> list[Pair]:
    """Keep refusal-side pairs between `min_refuse_share` and `max_refuse_share` of the set. Over the cap,
    refusal-side pairs go (refuse_more, which fix real failures, kept before keep_refusing anchors); under the
    floor, help_more pairs go (reviewed ones kept first). Deterministic: then by source and prompt hash."""
    help_more = [p for p in pairs if p.direction not in REFUSAL_SIDE]
    refuse = sorted(
        (p for p in pairs if p.direction in REFUSAL_SIDE),
        key=lambda p: (REFUSAL_SIDE.index(p.direction), _PRIORITY[p.source], p.prompt_hash),
    )
    share = min(max(max_refuse_share, 0.0), 1.0)
    cap = len(refuse) if share >= 1.0 else int(share / (1.0 - share) * len(help_more))
    dropped["balance_cap"] += max(0, len(refuse) - cap)
    refuse = refuse[:cap]
    floor = min(max(min_refuse_share, 0.0), share)
    if floor > 0.0:
        room = int((1.0 - floor) / floor * len(refuse) + 1e-9)
        kept = {id(p) for p in sorted(help_more, key=lambda p: (_PRIORITY[p.source], p.prompt_hash))[:room]}
        dropped["balance_floor"] += len(help_more) - len(kept)
        help_more = [p for p in help_more if id(p) in kept]
    return help_more + refuse


def is_eval(pair: Pair, eval_percent: int) -> bool:
    return int(pair.prompt_hash[:8], 16) % 100 < eval_percent


def build(col: Collected, src: PairSources, opts: PairOptions | None = None) -> PairSet:
    opts = opts or PairOptions()
    ps = raw_pairs(col, src, opts)
    pairs = mask_pairs(ps.pairs, src.mask)
    pairs = dedup(pairs, src.embed, opts.near_dup_threshold, ps.dropped)
    pairs = balance(pairs, opts.max_refuse_share, ps.dropped, opts.min_refuse_share)
    if src.mask is not None:
        ps.pending = [
            {
                **e,
                "answer": src.mask(e["answer"]),
                "prompt": [{**m, "content": src.mask(m["content"])} for m in e["prompt"]],
            }
            for e in ps.pending
        ]
    return PairSet(pairs, ps.pending, ps.dropped)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    data = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    path.write_text(data, encoding="utf-8")
    return hashlib.sha256(data.encode()).hexdigest()


def write(ps: PairSet, out_dir: Path, opts: PairOptions | None = None, **meta: Any) -> dict[str, Any]:
    """`train.jsonl`, `eval.jsonl`, `review.jsonl` and `manifest.json` (counts and hashes) under out_dir."""
    opts = opts or PairOptions()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train = [p for p in ps.pairs if not is_eval(p, opts.eval_percent)]
    held = [p for p in ps.pairs if is_eval(p, opts.eval_percent)]
    hashes = {
        "train.jsonl": _write_jsonl(out_dir / "train.jsonl", [p.row() for p in train]),
        "eval.jsonl": _write_jsonl(out_dir / "eval.jsonl", [p.row() for p in held]),
        "review.jsonl": _write_jsonl(out_dir / "review.jsonl", ps.pending),
        # The same pairs for OpenAI's preference fine-tuning (a hosted model's own trainer).
        "openai_train.jsonl": _write_jsonl(out_dir / "openai_train.jsonl", [openai_row(p.row()) for p in train]),
        "openai_eval.jsonl": _write_jsonl(out_dir / "openai_eval.jsonl", [openai_row(p.row()) for p in held]),
    }
    manifest = {
        "counts": {
            "train": len(train),
            "eval": len(held),
            "pending_review": len(ps.pending),
            "by_source": dict(Counter(p.source for p in ps.pairs)),
            "by_flag": dict(Counter(p.flag for p in ps.pairs)),
            "by_direction": dict(Counter(p.direction for p in ps.pairs)),
            "by_chosen": dict(Counter(p.chosen_by for p in ps.pairs)),
            "dropped": dict(ps.dropped),
        },
        "files": hashes,
        "options": asdict(opts),
        **meta,
    }
    manifest["hash"] = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


def load_rows(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
