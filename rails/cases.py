"""Policy regression cases (`cases.yml`): example conversations and what the rails must do with them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, model_validator

from guard.pipeline import Exchange, RailDecision, TriageResult
from guard.wire import ChatCompletionRequest, ChatMessage
from rails.config import RailsConfigError, load_doc, validate_doc
from rails.engine import RailsEngine
from rails.policy import Strict

Outcome = Literal["allow", "block", "would_block"]


class Case(Strict):
    name: str
    input: str | None = None
    messages: list[dict[str, str]] | None = None
    output: str | None = None  # the model's answer, checked by the output rails
    profile: str | None = None  # as if sent in the profile header
    tenant: str = "cases"
    stream: bool = False  # check `output` through the streaming guard instead
    expect: Outcome
    rail: str | None = None  # this rail must have acted (block, mask, flag, rewrite...)
    refused: bool | None = None  # refusal detection on `output`
    known_issue: str | None = None  # a documented miss (e.g. a classifier false positive): reported, not failed

    @model_validator(mode="after")
    def _one_input(self) -> Self:
        if (self.input is None) == (self.messages is None):
            raise ValueError("give exactly one of 'input' or 'messages'")
        return self

    def chat(self) -> list[ChatMessage]:
        if self.messages is not None:
            return [ChatMessage.model_validate(m) for m in self.messages]
        return [ChatMessage(role="user", content=self.input)]


class CasesFile(Strict):
    cases: list[Case] = Field(min_length=1)


@dataclass(slots=True)
class CaseResult:
    case: Case
    outcome: Outcome
    fired: list[str] = field(default_factory=list)
    refused: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems or self.case.known_issue is not None

    @property
    def status(self) -> str:
        if self.case.known_issue is not None:
            return "KNOWN" if self.problems else "FIXED"  # FIXED: the known issue no longer reproduces
        return "FAIL" if self.problems else "PASS"


def load_cases(path: Path) -> list[Case]:
    if not path.is_file():
        raise RailsConfigError(f"{path}: no such file")
    return validate_doc(CasesFile, load_doc(path)).cases


async def run_case(engine: RailsEngine, case: Case, triage: Any | None) -> CaseResult:
    """`triage` has `async classify(exchange)` or `async score_text(text)`; None runs without a classifier."""
    request = ChatCompletionRequest(model="cases", messages=case.chat(), stream=case.stream)
    ex = Exchange(id=uuid.uuid4().hex, tenant=case.tenant, request=request, profile=case.profile)
    ex.triage = await _classify(triage, ex)
    verdict = await engine.check_input(ex)
    decisions = list(verdict.decisions)
    blocked = verdict.block is not None
    if not blocked and case.output is not None:
        blocked = await _check_output(engine, ex, case, decisions)
    outcome: Outcome = "block" if blocked else "allow"
    if not blocked and any(d.result == "would_block" for d in decisions):
        outcome = "would_block"
    result = CaseResult(case, outcome, _acted(decisions), "model_refused" in ex.flags)
    if outcome != case.expect:
        result.problems.append(f"expected {case.expect}, got {outcome}")
    if case.rail is not None and case.rail not in result.fired:
        result.problems.append(f"expected rail {case.rail!r} to act; acted: {', '.join(result.fired) or 'none'}")
    if case.refused is not None and case.refused != result.refused:
        result.problems.append(f"expected refused={case.refused}, got {result.refused}")
    return result


async def _check_output(engine: RailsEngine, ex: Exchange, case: Case, decisions: list[RailDecision]) -> bool:
    text = case.output or ""
    if not case.stream:
        out = await engine.check_output(ex, text)
        decisions.extend(out.decisions)
        if out.refused:
            ex.flags.add("model_refused")
        return out.block is not None
    guard = engine.stream_guard(ex)
    for i in range(0, len(text), 8):
        step = await guard.feed(text[i:i + 8])
        decisions.extend(step.decisions)
        if step.block is not None:
            return True
    step = await guard.finish()
    decisions.extend(step.decisions)
    if step.refused:
        ex.flags.add("model_refused")
    return step.block is not None


async def _classify(triage: Any | None, ex: Exchange) -> TriageResult | None:
    if triage is None:
        return None
    if hasattr(triage, "classify"):
        return await triage.classify(ex)
    last = next(m.text for m in reversed(ex.request.messages) if m.role == "user")
    return await triage.score_text(last)


def _acted(decisions: list[RailDecision]) -> list[str]:
    return list(dict.fromkeys(d.rail for d in decisions if d.result != "pass" or d.action not in (None, "allow")))
