from __future__ import annotations

from pathlib import Path

import pytest
from rails_support import BrokenScorer, HashEncoder, WordScorer, exchange, write_rails

from guard.pipeline import Exchange, OutputVerdict, TextScorer, screener
from rails.engine import RailsEngine

POLICY = """\
    refusal_message: "I'm sorry, but I can't help with that."
    input:
      labels:
        violence_weapons: {action: refuse, alternative: "I can share general safety information."}
        cyber: {action: refuse, threshold: 0.99}
        medical_advice: {action: safe_complete, instruction: "No doses for this person."}
        financial_advice: {action: disclaim, text: "This is not investment advice."}
        jailbreak: {action: flag_for_review}
      intents:
        - name: cancel_account
          action: refuse
          message: "Please use the account page to cancel."
          threshold: 0.8
          examples: ["how do I cancel my account", "close my account please"]
      patterns:
        - {name: secret_word, action: refuse, keywords: [xyzzy]}
      pii: {action: redact}
    output:
      labels:
        violence_weapons: {action: refuse, threshold: 0.8}
      patterns:
        - {name: overpromise, action: refuse, regex: ["guaranteed (returns|profits?)"]}
      pii: {action: redact}
      length: {max_chars: 40, action: truncate}
    """


async def _engine(tmp_path: Path, policy: str = POLICY, scorer: object | None = None) -> RailsEngine:
    write_rails(tmp_path, policy)
    return RailsEngine.load(tmp_path, scorer=scorer or WordScorer(), encoder=HashEncoder())


async def _screen(engine: RailsEngine, ex: Exchange, scorer: WordScorer):
    return await screener(scorer, engine).screen(ex)


async def _output(
    engine: RailsEngine, ex: Exchange, text: str, scorer: TextScorer | None = None, *, tool_calls: bool = False
) -> OutputVerdict:
    """The answer classified and decided, as the pipeline does it."""
    return await screener(scorer, engine).check_output(ex, text, tool_calls=tool_calls)


async def test_harmful_label_is_refused_with_template_and_alternative(tmp_path: Path, scorer: WordScorer) -> None:
    engine = await _engine(tmp_path, scorer=scorer)
    verdict = await _screen(engine, exchange("how to make a bomb"), scorer)
    assert verdict.block is not None and verdict.block.rail == "label:violence_weapons"
    assert verdict.block.message == "I'm sorry, but I can't help with that. I can share general safety information."
    assert verdict.block.score == pytest.approx(0.95)


async def test_rule_threshold_overrides_the_classifier_labels(tmp_path: Path, scorer: WordScorer) -> None:
    engine = await _engine(tmp_path, scorer=scorer)
    verdict = await _screen(engine, exchange("tell me about ransomware history"), scorer)
    assert verdict.block is None  # scored 0.95 but the rule asks for 0.99


async def test_safe_complete_adds_a_system_instruction(tmp_path: Path, scorer: WordScorer) -> None:
    engine = await _engine(tmp_path, scorer=scorer)
    verdict = await _screen(engine, exchange("what dosage of ibuprofen", system="You are kind."), scorer)
    assert verdict.block is None and verdict.messages is not None
    assert verdict.messages[0].text == "You are kind.\n\nNo doses for this person."
    assert verdict.messages[1].text == "what dosage of ibuprofen"


async def test_disclaimer_and_review_flag(tmp_path: Path, scorer: WordScorer) -> None:
    engine = await _engine(tmp_path, scorer=scorer)
    verdict = await _screen(engine, exchange("which stocks to buy, jailbreak mode"), scorer)
    assert verdict.disclaimer == "\n\nThis is not investment advice."
    assert {(d.rail, d.result) for d in verdict.decisions} >= {
        ("label:financial_advice", "pass"),
        ("label:jailbreak", "flag"),
    }


async def test_pii_is_redacted_in_the_model_messages(tmp_path: Path, scorer: WordScorer) -> None:
    engine = await _engine(tmp_path, scorer=scorer)
    verdict = await _screen(engine, exchange("email bob@example.com my card 4111111111111111"), scorer)
    assert verdict.messages is not None
    assert verdict.messages[-1].text == "email [EMAIL] my card [CARD]"


async def test_custom_intent_matches_by_nearest_example(tmp_path: Path, scorer: WordScorer) -> None:
    engine = await _engine(tmp_path, scorer=scorer)
    verdict = await _screen(engine, exchange("how do I cancel my account"), scorer)
    assert verdict.block is not None and verdict.block.rail == "intent:cancel_account"
    assert verdict.block.message == "Please use the account page to cancel."
    other = await _screen(engine, exchange("what is the weather like"), scorer)
    assert other.block is None


async def test_keyword_rail_blocks_without_a_classifier(tmp_path: Path) -> None:
    write_rails(tmp_path, POLICY)
    engine = RailsEngine.load(tmp_path)  # no scorer, no encoder: label and intent rails idle
    verdict = await engine.check_input(exchange("say XYZZY"))
    assert verdict.block is not None and verdict.block.rail == "pattern:secret_word"


async def test_harmful_output_is_blocked(tmp_path: Path, scorer: WordScorer) -> None:
    engine = await _engine(tmp_path, scorer=scorer)
    ex = exchange("hello")
    out = await _output(engine, ex, "Sure: a bomb needs", scorer)
    assert out.block is not None and out.block.rail == "label:violence_weapons"
    assert ex.output_triage is not None


async def test_output_pattern_pii_and_truncation(tmp_path: Path, scorer: WordScorer) -> None:
    engine = await _engine(tmp_path, scorer=scorer)
    out = await _output(engine, exchange("x"), "We offer guaranteed returns!", scorer)
    assert out.block is not None and out.block.rail == "pattern:overpromise"
    out = await _output(engine, exchange("x"), "Reach me at bob@example.com. " + "a" * 40, scorer)
    assert out.block is None
    assert out.text == "Reach me at [EMAIL]. aaaaaaaaaaa"


async def test_model_refusal_is_detected_from_score_or_phrase(tmp_path: Path, scorer: WordScorer) -> None:
    engine = await _engine(tmp_path, scorer=scorer)
    ex = exchange("how do I boil an egg")
    out = await _output(engine, ex, "Sorry, that is not something I do.", scorer)
    assert out.refused and not ex.flags  # the engine decides; the pipeline writes the exchange's flags
    ex2 = exchange("how do I boil an egg")
    out2 = await _output(engine, ex2, "Well, I'm afraid I cannot help with that request.", scorer)
    assert out2.refused
    ex3 = exchange("how do I boil an egg")
    assert not (await _output(engine, ex3, "Put it in boiling water.", scorer)).refused
    calls = await _output(
        engine, ex3, 'apologise({"text": "Sorry, that is not something I do."})', scorer, tool_calls=True
    )
    assert not calls.refused  # tool-call arguments are not the model's prose


async def test_output_scorer_error_fails_closed_by_default(tmp_path: Path) -> None:
    engine = await _engine(tmp_path)
    out = await _output(engine, exchange("x"), "anything", BrokenScorer())
    assert out.block is not None and out.block.result == "error"
    assert out.block.message == "I'm sorry, but I can't help with that."


async def test_output_scorer_error_fails_open_when_configured(tmp_path: Path) -> None:
    engine = await _engine(tmp_path, POLICY + "stream: {on_error: open}\n")
    out = await _output(engine, exchange("x"), "anything", BrokenScorer())
    assert out.block is None and [d.result for d in out.decisions] == ["error"]


async def test_json_format_rail(tmp_path: Path) -> None:
    engine = await _engine(tmp_path, "output:\n  format: json\n")
    assert (await engine.check_output(exchange("x"), '{"a": 1}')).block is None
    assert (await engine.check_output(exchange("x"), "not json")).block is not None


async def test_clean_request_records_one_pass_decision_with_latency(tmp_path: Path, scorer: WordScorer) -> None:
    engine = await _engine(tmp_path, scorer=scorer)
    ex = exchange("what is the capital of France")
    verdict = await _screen(engine, ex, scorer)
    assert [(d.rail, d.result) for d in verdict.decisions] == [("policy", "pass")]
    assert verdict.decisions[0].latency_s > 0
    assert ex.rails_hash == engine.rails_hash and ex.profile == "default"


async def test_intent_rail_error_fails_closed(tmp_path: Path) -> None:
    scorer = WordScorer(embed_dims=32)  # embeddings no longer match the 64-dim intent index
    write_rails(tmp_path, POLICY)
    engine = RailsEngine.load(tmp_path, scorer=scorer, encoder=HashEncoder(64))
    ex = exchange("what is the weather like")
    ex.triage = await scorer.classify(ex)
    verdict = await engine.check_input(ex)
    assert verdict.block is not None and (verdict.block.rail, verdict.block.result) == ("intents", "error")


@pytest.mark.parametrize(
    ("answer", "refused"),
    [
        ("I'm sorry, but I can't help with that.", True),
        ("I\u2019m sorry, I cannot assist with that request.", True),
        ("I cannot provide instructions for making weapons.", True),
        ("I must decline.", True),
        ("I'm sorry to hear your parcel is late. Unfortunately we cannot ship today.", False),
        ("I can't help but notice the weather is lovely.", False),
    ],
)
async def test_refusal_phrases_do_not_fire_on_polite_answers(tmp_path: Path, answer: str, refused: bool) -> None:
    engine = await _engine(tmp_path, "allow_empty: true\noutput: {}\n")  # no scorer: phrases only
    assert (await engine.check_output(exchange("q"), answer)).refused is refused


async def test_refusal_naming_the_harmful_topic_is_not_blocked_as_harmful(tmp_path: Path, scorer: WordScorer) -> None:
    engine = await _engine(tmp_path, scorer=scorer)
    ex = exchange("how do I bake bread")
    out = await _output(engine, ex, "I'm sorry, but I can't help you build a bomb.", scorer)
    assert out.block is None and out.refused


async def test_label_tiers_refuse_when_sure_and_answer_carefully_when_unsure(tmp_path: Path) -> None:
    from guard.pipeline import TriageResult

    engine = await _engine(
        tmp_path,
        """\
        input:
          labels:
            cbrn:
              - {action: refuse, threshold: 0.9}
              - {action: safe_complete, threshold: 0.5, instruction: "Answer only if clearly harmless."}
        """,
    )

    async def verdict_for(score: float):
        ex = exchange("q")
        ex.triage = TriageResult({"cbrn": score}, ("cbrn",) if score > 0.3 else ())
        return await engine.check_input(ex)

    sure, unsure, low = await verdict_for(0.95), await verdict_for(0.7), await verdict_for(0.35)
    assert sure.block is not None and sure.block.rail == "label:cbrn"
    assert unsure.block is None and unsure.messages is not None
    assert unsure.messages[0].text == "Answer only if clearly harmless."
    assert low.block is None and low.messages is None
    assert [d.action for d in unsure.decisions] == ["safe_complete"]


async def test_a_scaled_tier_fires_below_the_classifiers_own_threshold_and_follows_it(tmp_path: Path) -> None:
    """`threshold_scale` is relative to the calibrated threshold the classifier ships, so a retrained
    classifier with new thresholds moves the caution zone with it."""
    from guard.pipeline import TriageResult

    engine = await _engine(
        tmp_path,
        """\
        input:
          labels:
            crime:
              - {action: refuse, threshold: 0.9}
              - {action: refuse}
              - {action: safe_complete, threshold_scale: 0.5, instruction: "Answer only if clearly harmless."}
        """,
    )

    async def verdict_for(score: float, threshold: float | None):
        ex = exchange("q")
        ex.triage = TriageResult(
            {"crime": score},
            ("crime",) if threshold and score >= threshold else (),
            thresholds={"crime": threshold} if threshold else {},
        )
        return await engine.check_input(ex)

    flagged, caution, low = await verdict_for(0.7, 0.6), await verdict_for(0.35, 0.6), await verdict_for(0.25, 0.6)
    assert flagged.block is not None  # over the classifier's threshold: the unscaled tier refuses
    assert caution.block is None and caution.messages[0].text == "Answer only if clearly harmless."
    assert low.block is None and low.messages is None  # under half the threshold
    assert (await verdict_for(0.35, 0.8)).messages is None  # a stricter classifier: 0.35 < 0.4
    assert (await verdict_for(0.35, None)).messages is None  # threshold unknown: the scaled tier never fires


async def test_threshold_scale_is_for_label_rules_only_and_not_with_a_threshold(tmp_path: Path) -> None:
    from rails.config import RailsConfigError

    for policy, msg in [
        ("input:\n  labels:\n    crime: {action: refuse, threshold: 0.5, threshold_scale: 0.5}\n", "not both"),
        (
            "input:\n  patterns:\n    - {name: p, action: refuse, keywords: [x], threshold_scale: 0.5}\n",
            "label rules only",
        ),
    ]:
        with pytest.raises(RailsConfigError, match=msg):
            await _engine(tmp_path, policy)


async def test_blocking_decision_is_the_recorded_one_with_its_latency(tmp_path: Path, scorer: WordScorer) -> None:
    engine = await _engine(tmp_path, scorer=scorer)
    verdict = await _screen(engine, exchange("how to make a bomb"), scorer)
    assert verdict.block is not None and verdict.block in verdict.decisions
    assert verdict.block.latency_s > 0
