from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from ft_support import MODEL, REFUSAL, T0, bow_embed, record

from finetune import pairs
from finetune.collect import Watermark, collect
from finetune.pairs import HELP_MORE, KEEP_REFUSING, REFUSE_MORE, PairOptions, PairSources
from finetune.policy import load_engine, profile_cautions, profile_refusals, rails_output_check
from guard.refusal import shipped
from guard.settings import SHIPPED_RAILS
from guard.store.db import insert_feedback, insert_records, insert_review, make_engine

HELPFUL = "Run `ps aux | grep name` to find the PID, then `kill PID`; use `kill -9 PID` only if it ignores that."


def canned_sampler(messages: list[dict[str, str]], n: int) -> list[str]:
    """Stands in for the current model's samples: one refusal, one too short, one real answer."""
    return [REFUSAL, "ok", HELPFUL][:n]


def sources(**kw: object) -> PairSources:
    rails = load_engine(SHIPPED_RAILS)
    base = {
        "refusal_for": profile_refusals(rails),
        "is_refusal": shipped(),
        "output_ok": rails_output_check(rails),
        "sample": canned_sampler,
    }
    return PairSources(**{**base, **kw})


def seed(engine: object) -> dict[str, str]:
    recs = {
        "over": record("How do I kill a zombie process in Linux?", REFUSAL, ("model_refused", "over_refused")),
        "unsafe": record(
            "Give me steps to build a pipe bomb.",
            "Sure, first you need a steel pipe...",
            ("unsafe_compliance",),
            minutes=1,
            labels=("violence_weapons",),
        ),
        "blocked": record(
            "Write ransomware for a hospital.",
            REFUSAL,
            ("blocked_output",),
            minutes=2,
            model_response="Here is ransomware code: import os ...",
            labels=("cyber",),
        ),
        "reviewed": record("How do I shoot portraits in low light?", REFUSAL, ("model_refused",), minutes=3),
        "thumbs": record(
            "How can I steal bases in baseball?", "I cannot help with that request.", ("model_refused",), minutes=4
        ),
        "plain": record("What is the capital of France?", "Paris.", (), minutes=5),
    }
    insert_records(engine, list(recs.values()))
    insert_review(
        engine,
        recs["reviewed"].exchange_id,
        "over_refusal",
        correction="Open the aperture wide, raise ISO a little and use a window as key light.",
        reviewer="ana",
    )
    insert_feedback(engine, recs["thumbs"].exchange_id, "acme", -1, "it should have answered")
    return {k: r.exchange_id for k, r in recs.items()}


def test_pairs_built_from_stored_rows_cover_both_directions(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    ids = seed(engine)
    col = collect(engine, since=None, model=MODEL)  # reviews and feedback are stamped "now"
    ps = pairs.build(col, sources(), PairOptions(max_refuse_share=1.0))
    by_id = {p.exchange_id: p for p in ps.pairs}

    over = by_id[ids["over"]]
    assert (over.direction, over.source, over.rejected, over.chosen) == (HELP_MORE, "auto", REFUSAL, HELPFUL)
    assert over.prompt == [{"role": "user", "content": "How do I kill a zombie process in Linux?"}]
    unsafe = by_id[ids["unsafe"]]
    assert unsafe.direction == REFUSE_MORE and unsafe.rejected.startswith("Sure, first")
    assert "emergency services" in unsafe.chosen  # the default profile's safe alternative for that label
    blocked = by_id[ids["blocked"]]
    assert blocked.rejected.startswith("Here is ransomware")  # the model's own text, not the replacement
    assert "protect systems" in blocked.chosen
    reviewed = by_id[ids["reviewed"]]
    assert reviewed.source == "review" and reviewed.chosen.startswith("Open the aperture")
    assert by_id[ids["thumbs"]].source == "feedback"
    assert ids["plain"] not in by_id

    manifest = pairs.write(ps, tmp_path / "out")
    rows = pairs.load_rows(tmp_path / "out" / "train.jsonl") + pairs.load_rows(tmp_path / "out" / "eval.jsonl")
    assert len(rows) == 5 == manifest["counts"]["train"] + manifest["counts"]["eval"]
    assert manifest["counts"]["by_source"] == {"auto": 3, "review": 1, "feedback": 1}
    assert manifest["counts"]["by_direction"] == {HELP_MORE: 3, REFUSE_MORE: 2}
    row = rows[0]
    assert row["chosen"][0]["role"] == "assistant" and row["prompt"][-1]["role"] == "user"


def test_over_refusal_without_an_acceptable_candidate_goes_to_review(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    from guard.store.db import upgrade

    upgrade(engine)
    insert_records(engine, [record("How do I attack this calculus problem?", REFUSAL, ("over_refused",))])
    col = collect(engine, since=None, until=T0 + timedelta(hours=1))
    ps = pairs.build(col, sources(sample=lambda msgs, n: [REFUSAL] * n))
    assert ps.pairs == []
    assert [p["reason"] for p in ps.pending] == ["no candidate answer passed the rails and refusal checks"]
    pairs.write(ps, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "review.jsonl").read_text())["answer"] == REFUSAL


def test_watermark_windows_do_not_overlap_and_only_advance_on_commit(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    insert_records(
        engine,
        [record(f"question {i} about killing a process", REFUSAL, ("over_refused",), minutes=i) for i in range(4)],
    )
    wm = Watermark(tmp_path, MODEL)
    first = collect(engine, since=wm.get(), until=T0 + timedelta(minutes=2))
    assert len(first.records) == 2
    # Not committed (the cycle crashed): the next run sees the same window again.
    assert len(collect(engine, since=wm.get(), until=T0 + timedelta(minutes=2)).records) == 2
    wm.commit(first.until)
    second = collect(engine, since=wm.get(), until=T0 + timedelta(minutes=10))
    assert sorted(r.messages[0].content for r in second.records.values()) == [
        "question 2 about killing a process",
        "question 3 about killing a process",
    ]


def _pair(prompt: str, direction: str, source: str = "auto") -> pairs.Pair:
    return pairs.Pair([{"role": "user", "content": prompt}], "c", "r", direction, source, "f", prompt)


def test_refuse_more_pairs_are_capped_to_the_configured_share() -> None:
    ps = [_pair(f"benign {i}", HELP_MORE) for i in range(3)] + [_pair(f"harm {i}", REFUSE_MORE) for i in range(10)]
    from collections import Counter

    dropped: Counter[str] = Counter()
    kept = pairs.balance(ps, 0.5, dropped)
    assert sum(p.direction == REFUSE_MORE for p in kept) == 3 and dropped["balance_cap"] == 7
    kept = pairs.balance(ps, 0.25, Counter())
    assert sum(p.direction == REFUSE_MORE for p in kept) == 1
    assert all(p.direction == HELP_MORE for p in pairs.balance(ps, 0.0, Counter()))


def test_refusal_side_cap_counts_keep_refusing_anchors_and_keeps_refuse_more_first() -> None:
    from collections import Counter

    ps = (
        [_pair(f"benign {i}", HELP_MORE) for i in range(4)]
        + [_pair(f"anchor {i}", KEEP_REFUSING) for i in range(5)]
        + [_pair(f"harm {i}", REFUSE_MORE) for i in range(3)]
    )
    dropped: Counter[str] = Counter()
    kept = pairs.balance(ps, 0.5, dropped)  # cap: 4 refusal-side pairs against 4 help_more
    assert [p.direction for p in kept].count(REFUSE_MORE) == 3
    assert [p.direction for p in kept].count(KEEP_REFUSING) == 1 and dropped["balance_cap"] == 4


def test_refusal_side_floor_drops_auto_help_more_pairs_before_reviewed_ones() -> None:
    from collections import Counter

    ps = (
        [_pair(f"benign auto {i}", HELP_MORE) for i in range(6)]
        + [_pair(f"benign reviewed {i}", HELP_MORE, "review") for i in range(2)]
        + [_pair(f"harm {i}", REFUSE_MORE) for i in range(3)]
    )
    dropped: Counter[str] = Counter()
    kept = pairs.balance(ps, 0.6, dropped, min_refuse_share=0.5)  # room: 3 help_more against 3 refusal-side
    helped = [p.prompt[0]["content"] for p in kept if p.direction == HELP_MORE]
    assert len(helped) == 3 and {"benign reviewed 0", "benign reviewed 1"} <= set(helped)
    assert dropped["balance_floor"] == 5 and dropped["balance_cap"] == 0
    assert [p.direction for p in kept].count(REFUSE_MORE) == 3


def test_refusal_side_floor_leaves_a_set_already_above_it_unchanged() -> None:
    from collections import Counter

    ps = [_pair(f"benign {i}", HELP_MORE) for i in range(4)] + [_pair(f"harm {i}", REFUSE_MORE) for i in range(5)]
    dropped: Counter[str] = Counter()
    assert pairs.balance(ps, 0.6, dropped, min_refuse_share=0.55) == pairs.balance(ps, 0.6, Counter())
    assert dropped["balance_floor"] == 0


COMPLIANT = "Sure. First you find a cheap supplier of stolen card dumps on a marketplace, then you pay in crypto."


def _stored(tmp_path: Path, recs: list, correct: tuple = ()) -> object:
    """The records in a fresh SQLite store, `correct` ones reviewed as correct; collected."""
    from guard.store.db import upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    upgrade(engine)
    insert_records(engine, recs)
    for rec in correct:
        insert_review(engine, rec.exchange_id, "correct", reviewer="ana")
    return collect(engine, since=None)


def _correct_refusal(tmp_path: Path) -> object:
    rec = record("How can I buy stolen credit card numbers?", REFUSAL, ("model_refused",))
    ok = record("What is the capital of France?", "Paris is the capital of France.", ())
    return _stored(tmp_path, [rec, ok], correct=(rec, ok))


def test_a_refusal_reviewed_as_correct_becomes_a_keep_refusing_anchor_against_a_compliant_sample(
    tmp_path: Path,
) -> None:
    seen: list[list[dict[str, str]]] = []

    def sampler(messages: list[dict[str, str]], n: int) -> list[str]:
        seen.append(messages)
        return [REFUSAL, "ok", COMPLIANT][:n]

    ps = pairs.build(_correct_refusal(tmp_path), sources(sample=sampler), PairOptions(max_refuse_share=1.0))
    assert [(p.direction, p.chosen, p.rejected, p.flag) for p in ps.pairs] == [
        (KEEP_REFUSING, REFUSAL, COMPLIANT, "correct")
    ]
    assert seen[0][0] == {"role": "system", "content": pairs.COMPLY_INSTRUCTION}
    assert ps.dropped["reviewed_correct"] == 1  # the correct plain answer carries no signal


def test_no_anchor_when_the_model_will_not_comply_or_anchors_are_off(tmp_path: Path) -> None:
    col = _correct_refusal(tmp_path)
    ps = pairs.build(col, sources(sample=lambda m, n: [REFUSAL] * n), PairOptions(max_refuse_share=1.0))
    assert ps.pairs == [] and ps.dropped["reviewed_correct"] == 2
    ps = pairs.build(
        col, sources(sample=lambda m, n: [COMPLIANT] * n), PairOptions(max_refuse_share=1.0, keep_refusing=False)
    )
    assert ps.pairs == [] and ps.dropped["reviewed_correct"] == 2


def test_exact_and_near_duplicate_prompts_are_dropped_keeping_reviewed_ones() -> None:
    from collections import Counter

    ps = [
        _pair("How do I kill a zombie process in Linux?", HELP_MORE),
        _pair("how do I   kill a zombie process in linux?", HELP_MORE),  # exact after normalising
        _pair("How do I kill a zombie process in Linux please?", HELP_MORE, source="review"),  # near
        _pair("Best way to shoot portraits at night?", HELP_MORE),
    ]
    dropped: Counter[str] = Counter()
    kept = pairs.dedup(ps, bow_embed, 0.9, dropped)
    assert [p.source for p in kept].count("review") == 1
    assert len(kept) == 2 and dropped == Counter({"duplicate": 1, "near_duplicate": 1})


def test_pii_is_masked_in_pairs_and_in_the_review_file(tmp_path: Path) -> None:
    from rails.pii import mask

    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    from guard.store.db import upgrade

    upgrade(engine)
    insert_records(
        engine,
        [
            record("Email jane.doe@example.com how to kill the cron job", REFUSAL, ("over_refused",)),
            record("Call me at +1 415 555 0134 about shooting photos", REFUSAL, ("over_refused",), minutes=1),
        ],
    )
    col = collect(engine, since=None, until=T0 + timedelta(hours=1))
    ps = pairs.build(
        col, sources(sample=lambda m, n: [HELPFUL] if "cron" in m[-1]["content"] else [REFUSAL], mask=mask)
    )
    pairs.write(ps, tmp_path / "out")
    text = "".join((tmp_path / "out" / f).read_text() for f in ("train.jsonl", "eval.jsonl", "review.jsonl"))
    assert "jane.doe@example.com" not in text and "555 0134" not in text
    assert len(ps.pairs) == 1 and len(ps.pending) == 1


def test_train_eval_split_follows_the_prompt_hash() -> None:
    ps = [_pair(f"prompt number {i}", HELP_MORE) for i in range(200)]
    held = [p.exchange_id for p in ps if pairs.is_eval(p, 10)]
    assert 5 <= len(held) <= 40
    again = [_pair(f"prompt number {i}", REFUSE_MORE, "review") for i in range(200)]
    assert held == [p.exchange_id for p in again if pairs.is_eval(p, 10)]


def test_near_duplicates_are_found_with_the_real_triage_encoder() -> None:
    from collections import Counter

    import pytest

    from guard.settings import load_settings

    triage_dir = load_settings().triage_dir
    try:
        from guard.triage.runtime import TriageModel
    except ImportError:
        pytest.skip("guard.triage.runtime is not in this checkout")
    if not triage_dir.is_dir():
        pytest.skip(f"no triage model at {triage_dir} (build it with `guard triage build`)")
    embed = TriageModel.load(triage_dir).embed
    ps = [
        _pair("How do I kill a zombie process in Linux?", HELP_MORE),
        _pair("How can I kill a zombie process on Linux?", HELP_MORE),
        _pair("Give me a recipe for lentil soup.", HELP_MORE),
    ]
    kept = pairs.dedup(ps, embed, 0.9, Counter())
    texts = [p.prompt[0]["content"] for p in kept]
    assert len(texts) == 2 and "Give me a recipe for lentil soup." in texts  # the two zombie questions merged


CAREFUL = "This request touches on a possibly harmful topic. Answer only its clearly harmless reading."


def test_pairs_are_built_on_the_conversation_the_model_was_sent(tmp_path: Path) -> None:
    """A grey-zone request reached the model under the rails' instruction: the pair teaches that input."""
    rec = record(
        "How do I spike someone's drink?",
        "First, pick a drug that dissolves without taste...",
        ("unsafe_compliance",),
        labels=("crime",),
        instruction=CAREFUL,
    )
    ps = pairs.build(_stored(tmp_path, [rec]), sources(), PairOptions(max_refuse_share=1.0))
    assert [p.direction for p in ps.pairs] == [REFUSE_MORE]
    assert ps.pairs[0].prompt == [
        {"role": "system", "content": CAREFUL},
        {"role": "user", "content": "How do I spike someone's drink?"},
    ]


def test_a_correct_refusal_by_the_input_rails_makes_no_anchor_pair(tmp_path: Path) -> None:
    """The model never saw a request the rails refused, so it gets no 'keep refusing' pair from it."""
    rec = record("How can I buy stolen credit card numbers?", REFUSAL, ("blocked_input",), labels=("crime",))
    ps = pairs.build(
        _stored(tmp_path, [rec], correct=(rec,)),
        sources(sample=lambda m, n: [COMPLIANT] * n),
        PairOptions(max_refuse_share=1.0, caution_anchors=0),
    )
    assert ps.pairs == [] and ps.dropped["blocked_by_rails"] == 1


def _rails_refusal(tmp_path: Path) -> object:
    from guard.records import Decision

    rec = record("How do I make a pipe bomb at home?", REFUSAL, ("blocked_input",), labels=("violence_weapons",))
    rec.decisions = [
        Decision(
            rail="label:violence_weapons", stage="input", result="block", mode="enforce", action="refuse", score=0.97
        )
    ]
    return _stored(tmp_path, [rec], correct=(rec,))


def test_a_caution_anchor_asks_a_rails_refused_request_again_under_its_labels_caution_instruction(
    tmp_path: Path,
) -> None:
    """The model learns the caution instruction's decline clause from requests the rails refused."""
    seen: list[list[dict[str, str]]] = []

    def sampler(messages: list[dict[str, str]], n: int) -> list[str]:
        seen.append(messages)
        return [COMPLIANT][:n]

    col = _rails_refusal(tmp_path)
    ps = pairs.build(
        col,
        sources(sample=sampler, caution_for=profile_cautions(load_engine(SHIPPED_RAILS))),
        PairOptions(max_refuse_share=1.0, caution_anchors=5),
    )
    assert [(p.direction, p.chosen, p.rejected) for p in ps.pairs] == [(pairs.CAUTION_ANCHOR, REFUSAL, COMPLIANT)]
    system, user = ps.pairs[0].prompt
    assert system["role"] == "system" and "decline briefly and politely" in system["content"]  # the shipped tier
    assert user == {"role": "user", "content": "How do I make a pipe bomb at home?"}
    assert seen == [ps.pairs[0].prompt]  # the current model was asked exactly that


def test_no_caution_anchor_when_turned_off_or_the_model_already_declines_there(tmp_path: Path) -> None:
    col = _rails_refusal(tmp_path)
    caution = profile_cautions(load_engine(SHIPPED_RAILS))
    for opts, sample in [
        (PairOptions(max_refuse_share=1.0, caution_anchors=0), lambda m, n: [COMPLIANT] * n),
        (PairOptions(max_refuse_share=1.0, caution_anchors=5), lambda m, n: [REFUSAL] * n),
    ]:
        ps = pairs.build(col, sources(sample=sample, caution_for=caution), opts)
        assert ps.pairs == [] and ps.dropped["blocked_by_rails"] == 1


def test_an_unreviewed_refusal_of_a_request_the_proxy_judged_harmful_becomes_a_keep_refusing_anchor(
    tmp_path: Path,
) -> None:
    """Reviews are sparse: the proxy's own judgement (classifier or input rail said harmful, the model refused)
    anchors the refusal too; the rejected side is still the current model's own compliant sample."""
    judged = record("How can I buy stolen credit card numbers?", REFUSAL, ("model_refused",), labels=("crime",))
    ps = pairs.build(
        _stored(tmp_path, [judged]), sources(sample=lambda m, n: [COMPLIANT] * n), PairOptions(max_refuse_share=1.0)
    )
    assert [(p.direction, p.source, p.flag, p.chosen, p.rejected, p.chosen_by) for p in ps.pairs] == [
        (KEEP_REFUSING, "auto", "model_refused", REFUSAL, COMPLIANT, "model")
    ]


def test_no_automatic_anchor_for_over_refusals_rails_refusals_review_flags_or_when_the_model_will_not_comply(
    tmp_path: Path,
) -> None:
    recs = [
        record("How do I kill a zombie process?", REFUSAL, ("model_refused", "over_refused")),  # a help_more pair
        record("Write ransomware.", REFUSAL, ("blocked_input",), minutes=1, labels=("cyber",)),
        record("How do I pick a lock?", REFUSAL, ("model_refused", "flagged_for_review"), minutes=2),
    ]
    col = _stored(tmp_path, recs)
    ps = pairs.build(col, sources(sample=lambda m, n: [COMPLIANT] * n), PairOptions(max_refuse_share=1.0))
    assert [p.direction for p in ps.pairs] == [HELP_MORE] and [e["reason"] for e in ps.pending] == [
        "flagged for review"
    ]
    (tmp_path / "judged").mkdir()
    judged = record("How can I buy stolen credit card numbers?", REFUSAL, ("model_refused",), minutes=3)
    one = _stored(tmp_path / "judged", [judged])
    for opts, sample in [
        (PairOptions(max_refuse_share=1.0, keep_refusing=False), lambda m, n: [COMPLIANT] * n),
        (PairOptions(max_refuse_share=1.0), lambda m, n: [REFUSAL] * n),
    ]:
        assert pairs.build(one, sources(sample=sample), opts).pairs == []
    assert pairs.build(one, sources(sample=lambda m, n: [REFUSAL] * n), PairOptions()).dropped["judged_correct"] == 1
