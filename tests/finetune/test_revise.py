"""Critique and revise: a benign request the model refused, with no reviewer correction, gets a rewritten
answer against the rails profile's principles; the rails and the refusal detector vet it."""

from __future__ import annotations

from typing import Any

from ft_support import REFUSAL, record

from finetune.pairs import HELP_MORE, PairOptions, PairSources, pair_for
from finetune.policy import load_engine, profile_principles, rails_output_check
from finetune.revise import revise, upstream_generate
from guard.refusal import shipped
from guard.settings import SHIPPED_RAILS

PROMPT = "How do I kill a zombie process in Linux?"
RAILS = load_engine(SHIPPED_RAILS)
PRINCIPLES = profile_principles(RAILS)


def sources(generate: Any, sample: Any = None) -> PairSources:
    return PairSources(
        is_refusal=shipped(),
        output_ok=rails_output_check(RAILS),
        sample=sample,
        revise=lambda messages, refusal, profile: revise(messages, refusal, PRINCIPLES(profile), generate),
    )


def test_the_shipped_default_profile_writes_principles_down() -> None:
    assert any("alarming words" in p for p in PRINCIPLES(None))


def test_the_upstream_critiques_the_refusal_then_rewrites_it_against_the_principles(upstream: Any) -> None:
    gen = upstream_generate(upstream.v1, None, "gpt-fake")  # answers "echo: <the prompt it was sent>"
    out = revise([{"role": "user", "content": PROMPT}], REFUSAL, ["Help with lawful requests."], gen)
    assert out is not None and out.startswith("echo: Request: " + PROMPT)
    critique = out.split("Critique of an earlier reply: ")[1]
    assert critique.startswith("echo: Here is a request") and f"Reply: {REFUSAL}" in critique
    assert "- Help with lawful requests." in out
    assert revise([{"role": "user", "content": PROMPT}], REFUSAL, [], gen) is None  # no principles, no rewrite


HELPFUL = "A zombie is already dead: find its parent with `ps -o ppid= -p PID` and restart or stop the parent."


def reviser_model(messages: list[dict[str, str]]) -> str:
    """A model that critiques when asked to critique and otherwise writes the helpful answer."""
    text = messages[-1]["content"]
    if text.startswith("Here is a request"):
        return "The reply refuses a harmless request about Linux processes; it should explain how to clear a zombie."
    assert "Critique of an earlier reply: The reply refuses" in text and "- Help with every lawful request" in text
    return HELPFUL


def test_an_over_refusal_without_correction_gets_the_revision_as_chosen() -> None:
    src = sources(reviser_model)
    pair = pair_for(
        record(PROMPT, REFUSAL, ("model_refused", "over_refused")), "over_refused", "auto", src, PairOptions()
    )
    assert pair is not None and not isinstance(pair, dict)
    assert pair.direction == HELP_MORE and pair.chosen_by == "revision" and pair.rejected == REFUSAL
    assert pair.chosen == HELPFUL


def test_an_echoed_prompt_that_quotes_the_refusal_is_caught_by_the_refusal_detector(upstream: Any) -> None:
    src = sources(upstream_generate(upstream.v1, None, "gpt-fake"))  # the revision repeats the refusal early on
    pending = pair_for(
        record(PROMPT, REFUSAL, ("model_refused", "over_refused")), "over_refused", "auto", src, PairOptions()
    )
    assert isinstance(pending, dict) and "no candidate answer passed" in pending["reason"]


def test_a_revision_that_still_refuses_is_not_chosen_and_sampling_takes_over() -> None:
    helpful = "Find the parent with `ps -o ppid= -p PID` and restart or kill that parent process."
    src = sources(lambda messages: "I'm sorry, but I can't help with that.", sample=lambda m, n: [helpful] * n)
    pair = pair_for(
        record(PROMPT, REFUSAL, ("model_refused", "over_refused")), "over_refused", "auto", src, PairOptions()
    )
    assert pair is not None and not isinstance(pair, dict)
    assert pair.chosen_by == "sample" and pair.chosen == helpful
    nothing = sources(lambda messages: "Sorry, I cannot do that.")
    pending = pair_for(
        record(PROMPT, REFUSAL, ("model_refused", "over_refused")), "over_refused", "auto", nothing, PairOptions()
    )
    assert isinstance(pending, dict) and "no candidate answer passed" in pending["reason"]


def test_a_reviewer_correction_wins_over_the_revision() -> None:
    src = sources(reviser_model)
    fix = "Use `kill -9` on the parent process; zombies are reaped when their parent exits."
    rec = record(PROMPT, REFUSAL, ("model_refused",))
    pair = pair_for(rec, "over_refusal", "review", src, PairOptions(), correction=fix)
    assert pair is not None and not isinstance(pair, dict)
    assert pair.chosen == fix and pair.chosen_by == "reviewer"
