"""Every shipped config's cases.yml: all of them with the real ONNX triage model, the rule-only ones always."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from guard.settings import SHIPPED_RAILS
from rails.cases import Case, load_cases, run_case
from rails.engine import RailsEngine

CONFIGS = sorted(p.name for p in SHIPPED_RAILS.parent.iterdir() if p.is_dir())


@pytest.fixture
async def triage(triage_model: Any) -> AsyncIterator[Any]:
    """The proxy's own triage stage around the built ONNX model (same text layout as serving)."""
    from guard.triage.stage import TriageStage

    stage = TriageStage(triage_model, max_wait_ms=0.0)
    await stage.start()
    yield stage
    await stage.aclose()


def _failures(results: list) -> list[str]:
    return [
        f"{r.case.name}: {'; '.join(r.problems)} (rails: {', '.join(r.fired) or '-'})" for r in results if not r.passed
    ]


def test_every_shipped_config_has_cases() -> None:
    assert set(CONFIGS) == {"default", "customer-service", "fintech", "health-info", "regional"}
    for name in CONFIGS:
        cases = load_cases(SHIPPED_RAILS.parent / name / "cases.yml")
        assert {c.expect for c in cases} >= {"allow", "block"}, name


@pytest.mark.parametrize("name", CONFIGS)
async def test_shipped_config_cases_pass_with_the_real_triage_model(name: str, triage: Any) -> None:
    path = SHIPPED_RAILS.parent / name
    engine = RailsEngine.load(path, scorer=triage, encoder=triage)
    results = [await run_case(engine, case, triage) for case in load_cases(path / "cases.yml")]
    assert not _failures(results)


def _rule_only(case: Case) -> bool:
    return case.rail is not None and case.rail.startswith(("pattern:", "pii", "length"))


@pytest.mark.parametrize("name", CONFIGS)
async def test_shipped_rule_cases_pass_without_a_classifier(name: str) -> None:
    path: Path = SHIPPED_RAILS.parent / name
    engine = RailsEngine.load(path)
    cases = [c for c in load_cases(path / "cases.yml") if _rule_only(c)]
    assert cases, f"{name} has no rule-only cases"
    results = [await run_case(engine, case, None) for case in cases]
    assert not _failures(results)


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_refusals_open_with_the_conventional_phrase(name: str) -> None:
    engine = RailsEngine.load(SHIPPED_RAILS.parent / name)
    messages = set()
    for prof in engine.profiles.values():
        tiers = [r for group in (*prof.input_labels, *prof.output_labels) for r in group]
        rules = [*tiers, *prof.input_patterns, *prof.output_patterns]
        messages |= {r.fire.message for r in rules if r.fire.action == "refuse"}
        messages.add(prof.refusal_message)
    assert messages
    assert all(m.startswith("I'm sorry, but I can't help with that") for m in messages), messages
