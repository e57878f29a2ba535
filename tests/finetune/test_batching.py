"""The pair builder asks the model one request at a time; the model answers them in batches, with the same pairs
as when it answers one by one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from ft_support import REFUSAL, record

from finetune import pairs
from finetune.batching import BatchedGeneration, Deferred
from finetune.collect import collect
from finetune.pairs import PairOptions, PairSources
from finetune.policy import load_engine, profile_principles, rails_output_check
from finetune.revise import revise
from guard.refusal import shipped
from guard.settings import SHIPPED_RAILS
from guard.store.db import insert_records, insert_review, make_engine, upgrade

RAILS = load_engine(SHIPPED_RAILS)
PRINCIPLES = profile_principles(RAILS)
COMPLIANT = "Sure. First you find a cheap supplier of stolen card dumps on a marketplace, then you pay in crypto."
SAMPLES = [REFUSAL, "ok", COMPLIANT]  # the n samples of one request: a refusal, a too-short one, a real answer


def greedy(messages: list[dict[str, str]]) -> str:
    """A model that critiques when asked to and otherwise writes an answer naming the request."""
    text = messages[-1]["content"]
    if text.startswith("Here is a request"):
        return "The reply refuses a harmless request; it should have answered it."
    request = text.split("\n\n")[0].removeprefix("Request: ")
    return f"Here is a full and direct answer to '{request}', step by step, with the details that matter."


def generate_many(convs: Sequence[list[dict[str, str]]], max_new_tokens: int, sample: bool) -> list[str]:
    """The same model answering a batch: the k-th copy of a conversation in a sampled batch gets the k-th sample."""
    seen: dict[str, int] = {}
    out = []
    for c in convs:
        key = repr(c)
        k = seen[key] = seen.get(key, -1) + 1
        out.append(SAMPLES[k % len(SAMPLES)] if sample else greedy(c))
    return out


def one_by_one_sampler(messages: list[dict[str, str]], n: int) -> list[str]:
    return generate_many([messages] * n, 96, True)


def sources(sample: object, generate: object, flush: object = None) -> PairSources:
    return PairSources(
        is_refusal=shipped(),
        output_ok=rails_output_check(RAILS),
        sample=sample,  # type: ignore[arg-type]
        revise=lambda m, refusal, profile: revise(m, refusal, PRINCIPLES(profile), generate),  # type: ignore[arg-type]
        flush=flush,  # type: ignore[arg-type]
    )


def _collected(tmp_path: Path) -> object:
    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    upgrade(engine)
    over = [
        record(f"How do I kill zombie process number {i}?", REFUSAL, ("over_refused",), minutes=i) for i in range(5)
    ]
    correct = [
        record(f"How can I buy stolen card number {i}?", REFUSAL, ("model_refused",), minutes=10 + i) for i in range(3)
    ]
    unsafe = record("Steps to make a pipe bomb?", "Sure, first a steel pipe.", ("unsafe_compliance",), minutes=20)
    insert_records(engine, [*over, *correct, unsafe])
    for rec in correct:
        insert_review(engine, rec.exchange_id, "correct", reviewer="ana")
    return collect(engine, since=None)


class Counting:
    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, convs: Sequence[list[dict[str, str]]], max_new_tokens: int, sample: bool) -> list[str]:
        self.batches.append(len(convs))
        return generate_many(convs, max_new_tokens, sample)


def test_batched_generation_builds_the_same_pairs_as_one_by_one_generation_in_a_few_batches(tmp_path: Path) -> None:
    col = _collected(tmp_path)
    opts = PairOptions(max_refuse_share=1.0)
    direct = pairs.build(col, sources(one_by_one_sampler, greedy), opts)  # type: ignore[arg-type]

    model = Counting()
    batched = BatchedGeneration(model)
    built = pairs.build(
        col,  # type: ignore[arg-type]
        sources(batched.sampler(), batched.greedy(160), batched.flush),
        opts,
    )
    assert [p.row() for p in built.pairs] == [p.row() for p in direct.pairs]
    assert {p.direction for p in built.pairs} == {pairs.HELP_MORE, pairs.KEEP_REFUSING, pairs.REFUSE_MORE}
    assert sum(p.chosen_by == "revision" for p in built.pairs) == 5
    # 5 critiques and 3 x 4 anchor samples in the first round, then the 5 revisions: not 5 x 2 + 3 calls.
    assert sorted(model.batches) == [5, 5, 12]


def test_a_request_not_answered_yet_defers_and_flush_answers_every_recorded_one() -> None:
    model = Counting()
    batched = BatchedGeneration(model)
    ask = batched.greedy(40)
    conv = [{"role": "user", "content": "Request: hello"}]
    with pytest.raises(Deferred):
        ask(conv)
    with pytest.raises(Deferred):
        batched.sampler()(conv, 2)
    assert batched.flush() == 2 and model.batches == [1, 2]
    assert ask(conv) == greedy(conv) and batched.sampler()(conv, 2) == SAMPLES[:2]
    assert batched.flush() == 0  # everything asked for is answered


def test_a_build_whose_deferred_generation_nobody_answers_fails_plainly(tmp_path: Path) -> None:
    batched = BatchedGeneration(Counting())
    with pytest.raises(RuntimeError, match="wait on generation"):
        pairs.build(_collected(tmp_path), sources(batched.sampler(), greedy))  # type: ignore[arg-type]
