from __future__ import annotations

from pathlib import Path

import pytest
from rails_support import WordScorer, exchange, write_rails

from guard.errors import UnknownProfile
from guard.pipeline import Exchange, derive_flags, screener
from rails.engine import RailsEngine

REGIONAL = """\
    default_profile: us
    tenants: {acme-eu: eu, acme-apac: apac}
    refusal_message: "I'm sorry, but I can't help with that."
    input:
      labels:
        violence_weapons: {action: refuse}
        financial_advice: {action: disclaim, text: "Not investment advice."}
    profiles:
      us: {}
      eu:
        refusal_message: "I'm sorry, but I can't help with that request under our EU policy."
        input:
          labels:
            financial_advice: {action: refuse}
      apac:
        shadow: true
    """


@pytest.fixture
def engine(tmp_path: Path, scorer: WordScorer) -> RailsEngine:
    return RailsEngine.load(write_rails(tmp_path, REGIONAL), scorer=scorer)


async def _check(engine: RailsEngine, ex: Exchange, scorer: WordScorer):
    ex.triage = await scorer.classify(ex)
    return await engine.check_input(ex)


def test_header_beats_tenant_mapping_which_beats_default(engine: RailsEngine) -> None:
    assert engine.resolve_profile(exchange("hi", tenant="acme-eu", profile="apac")) == "apac"
    assert engine.resolve_profile(exchange("hi", tenant="acme-eu")) == "eu"
    assert engine.resolve_profile(exchange("hi", tenant="someone")) == "us"


async def test_unknown_profile_header_is_a_400_not_a_silent_default(engine: RailsEngine) -> None:
    with pytest.raises(UnknownProfile) as info:
        await engine.check_input(exchange("hi", profile="mars"))
    assert info.value.status == 400 and "mars" in info.value.message


async def test_profiles_differ_in_what_they_allow_and_how_they_refuse(engine: RailsEngine, scorer: WordScorer) -> None:
    us = await _check(engine, exchange("which stocks should I buy", tenant="x"), scorer)
    assert us.block is None and us.disclaimer == "\n\nNot investment advice."
    eu = await _check(engine, exchange("which stocks should I buy", tenant="acme-eu"), scorer)
    assert eu.block is not None
    assert eu.block.message == "I'm sorry, but I can't help with that request under our EU policy."
    bomb = await _check(engine, exchange("bomb recipe", tenant="acme-eu"), scorer)
    assert bomb.block is not None and bomb.block.rail == "label:violence_weapons"


async def test_shadow_profile_records_would_block_without_enforcing(engine: RailsEngine, scorer: WordScorer) -> None:
    ex = exchange("bomb recipe", tenant="acme-apac")
    verdict = await _check(engine, ex, scorer)
    assert verdict.block is None
    assert [(d.rail, d.result, d.mode) for d in verdict.decisions] == [
        ("label:violence_weapons", "would_block", "shadow")
    ]
    ex.decisions.extend(verdict.decisions)
    assert "would_block" in derive_flags(ex)


async def test_shadow_rule_is_not_enforced_but_other_rules_are(tmp_path: Path, scorer: WordScorer) -> None:
    engine = RailsEngine.load(
        write_rails(
            tmp_path,
            """\
        input:
          labels:
            violence_weapons: {action: refuse, shadow: true}
            cyber: {action: refuse}
          pii: {action: redact, shadow: true}
        """,
        ),
        scorer=scorer,
    )
    shadowed = await _check(engine, exchange("bomb, mail me at a@b.co"), scorer)
    assert shadowed.block is None and shadowed.messages is None  # shadow redaction is not applied either
    assert {(d.rail, d.result, d.mode) for d in shadowed.decisions} == {
        ("label:violence_weapons", "would_block", "shadow"),
        ("pii", "mask", "shadow"),
    }
    enforced = await _check(engine, exchange("ransomware and a bomb"), scorer)
    assert enforced.block is not None and enforced.block.rail == "label:cyber"


async def test_global_shadow_mode_covers_output_rails(tmp_path: Path, scorer: WordScorer) -> None:
    engine = RailsEngine.load(
        write_rails(
            tmp_path,
            """\
        shadow: true
        output:
          labels: {violence_weapons: {action: refuse}}
        """,
        ),
    )
    out = await screener(scorer, engine).check_output(exchange("x"), "the bomb goes")
    assert out.block is None
    assert [(d.result, d.mode) for d in out.decisions] == [("would_block", "shadow")]
