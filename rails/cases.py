"""Policy regression cases (`cases.yml`): example conversations and what the rails must do with them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, model_validator

from guard.domain import BLOCKED, Message, ModelReply, StreamEvent
from guard.pipeline import Exchange, RailDecision, Streamed, screener
from guard.wire import ChatCompletionRequest, ChatMessage, messages_from_wire
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

    def chat(self) -> list[Message]:
        if self.messages is not None:
            return messages_from_wire([ChatMessage.model_validate(m) for m in self.messages])
        return [Message.user(self.input or "")]


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
    """Run a case through the proxy's own pipeline: screening, and with an `output`, the model's answer as
    `output` through the output rails (streamed when `stream`). `triage`: a triage stage, a scorer or None."""
    pipeline = screener(triage, engine)
    ex = Exchange.of(case.chat(), tenant=case.tenant, profile=case.profile, stream=case.stream)
    if case.output is None:
        blocked = (await pipeline.screen(ex)).block is not None
    else:
        reply = await pipeline.handle(ex, CannedModel(case.output))
        if isinstance(reply, Streamed):
            async for _ in reply:
                pass
        blocked = ex.finish_reason == BLOCKED
    decisions = ex.decisions
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


class CannedModel:
    """A chat model whose answer is a case's `output` (streamed in 8-character pieces)."""

    name = "cases"
    version = None
    piece = 8

    def __init__(self, text: str) -> None:
        self.text = text

    async def complete(self, request: ChatCompletionRequest | None, messages: list[Message] | None) -> ModelReply:
        return ModelReply.of_text(self.text)

    async def stream(
        self, request: ChatCompletionRequest | None, messages: list[Message] | None
    ) -> AsyncIterator[StreamEvent]:
        for i in range(0, len(self.text), self.piece):
            yield StreamEvent.of_text(self.text[i : i + self.piece])
        yield StreamEvent.of_text(finish_reason="stop")


def _acted(decisions: list[RailDecision]) -> list[str]:
    return list(dict.fromkeys(d.rail for d in decisions if d.result != "pass" or d.action not in (None, "allow")))
