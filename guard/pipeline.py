"""The request pipeline: triage -> input rails -> model -> output rails -> record.

Each stage is a small protocol; `create_app` plugs real implementations in. The routes only call
`Pipeline.complete` and `Pipeline.stream`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from guard import metrics
from guard.taxonomy import HARMFUL
from guard.wire import ChatCompletionRequest, ChatMessage, FinishReason, Usage

Stage = Literal["input", "output"]
RailResult = Literal["pass", "block", "mask", "would_block", "error", "flag"]
Mode = Literal["enforce", "shadow"]


@dataclass(frozen=True, slots=True)
class TriageResult:
    """Sigmoid score per label, the labels over their thresholds, and the sentence embedding."""

    scores: dict[str, float]
    labels: tuple[str, ...] = ()
    embedding: Any = None  # numpy vector from the same forward pass (custom intents); not recorded
    device: str = "none"
    # The classifier's calibrated per-label thresholds (the model's own mapping, shared, not copied): rails
    # tiers written relative to them (`threshold_scale`) follow a retrained classifier without edits.
    thresholds: Mapping[str, float] = field(default_factory=dict)

    @property
    def harmful(self) -> bool:
        return any(label in HARMFUL for label in self.labels)


@dataclass(frozen=True, slots=True)
class RailDecision:
    rail: str
    stage: Stage
    result: RailResult
    mode: Mode = "enforce"
    action: str | None = None
    message: str | None = None  # the text the user sees when this decision blocks
    score: float | None = None
    latency_s: float = 0.0

    @property
    def blocks(self) -> bool:
        return self.result == "block" and self.mode == "enforce"


@dataclass(slots=True)
class InputVerdict:
    decisions: list[RailDecision] = field(default_factory=list)
    block: RailDecision | None = None  # set when an enforcing rail refuses the request
    messages: list[ChatMessage] | None = None  # rewritten conversation for the model (redaction, instructions)
    disclaimer: str | None = None  # appended to the model's answer


@dataclass(slots=True)
class OutputVerdict:
    decisions: list[RailDecision] = field(default_factory=list)
    block: RailDecision | None = None
    text: str | None = None  # rewritten answer (masking, disclaimers); None keeps the model's text
    refused: bool = False  # the model itself refused


@dataclass(slots=True)
class StreamStep:
    """What a streaming output check lets through now, and whether it stops the stream."""

    release: str = ""
    block: RailDecision | None = None
    decisions: list[RailDecision] = field(default_factory=list)


@dataclass(slots=True)
class ModelReply:
    text: str
    finish_reason: FinishReason = "stop"
    usage: Usage | None = None


@dataclass(slots=True)
class StreamEvent:
    text: str = ""
    finish_reason: FinishReason | None = None
    usage: Usage | None = None


@dataclass(slots=True)
class Exchange:
    """Everything the proxy saw and decided about one request; recorded at the end."""

    id: str
    tenant: str
    request: ChatCompletionRequest
    api_key_hash: str | None = None
    profile: str | None = None
    started_at: float = field(default_factory=time.time)
    model_version: str | None = None
    rails_hash: str | None = None
    triage: TriageResult | None = None
    output_triage: TriageResult | None = None
    decisions: list[RailDecision] = field(default_factory=list)
    model_messages: list[ChatMessage] | None = None
    response_text: str = ""
    model_text: str = ""  # what the model said before output rails changed it
    finish_reason: str | None = None
    usage: Usage | None = None
    flags: set[str] = field(default_factory=set)
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def stream(self) -> bool:
        return self.request.stream

    @property
    def model(self) -> str:
        return self.request.model


class Triage(Protocol):
    async def classify(self, exchange: Exchange) -> TriageResult | None: ...


class InputRails(Protocol):
    async def check_input(self, exchange: Exchange) -> InputVerdict: ...


class OutputRails(Protocol):
    async def check_output(self, exchange: Exchange, text: str) -> OutputVerdict: ...

    def stream_guard(self, exchange: Exchange) -> StreamGuard: ...


class StreamGuard(Protocol):
    async def feed(self, text: str) -> StreamStep: ...

    async def finish(self) -> StreamStep: ...


class ChatModel(Protocol):
    name: str

    @property
    def version(self) -> str | None: ...

    async def complete(self, request: ChatCompletionRequest, messages: list[ChatMessage]) -> ModelReply: ...

    def stream(self, request: ChatCompletionRequest, messages: list[ChatMessage]) -> AsyncIterator[StreamEvent]: ...


class Recorder(Protocol):
    def record(self, exchange: Exchange) -> None: ...


# Pass-through stages ------------------------------------------------------------------------------


class NoTriage:
    async def classify(self, exchange: Exchange) -> TriageResult | None:
        return None


class PassStreamGuard:
    async def feed(self, text: str) -> StreamStep:
        return StreamStep(release=text)

    async def finish(self) -> StreamStep:
        return StreamStep()


class NoRails:
    async def check_input(self, exchange: Exchange) -> InputVerdict:
        return InputVerdict()

    async def check_output(self, exchange: Exchange, text: str) -> OutputVerdict:
        return OutputVerdict()

    def stream_guard(self, exchange: Exchange) -> StreamGuard:
        return PassStreamGuard()


class NoRecorder:
    def record(self, exchange: Exchange) -> None:
        return None


# Derived flags ---------------------------------------------------------------------------------------


def derive_flags(ex: Exchange) -> set[str]:
    """Flags that follow from the decisions; rails may already have added their own."""
    flags = set(ex.flags)
    for d in ex.decisions:
        if d.blocks:
            flags.add("blocked_input" if d.stage == "input" else "blocked_output")
        if d.result == "would_block":
            flags.add("would_block")
        if d.result == "flag":
            flags.add("flagged_for_review")
    judged_harmful = (ex.triage is not None and ex.triage.harmful) or any(
        d.stage == "input" and d.result in ("block", "would_block") for d in ex.decisions
    )
    answered = ex.finish_reason in ("stop", "length") and "blocked_input" not in flags
    if "model_refused" in flags and not judged_harmful:
        flags.add("over_refused")
    if judged_harmful and answered and "model_refused" not in flags:
        flags.add("unsafe_compliance")
    if any(d.stage == "output" and d.blocks for d in ex.decisions):
        flags.add("unsafe_compliance")  # the model wrote what an output rail had to stop
    return flags


def record_decisions(decisions: list[RailDecision]) -> None:
    for d in decisions:
        metrics.RAIL_EVALUATIONS.labels(d.rail, d.stage, d.result, d.mode).inc()
        metrics.RAIL_LATENCY.labels(d.stage).observe(d.latency_s)


# Orchestration -------------------------------------------------------------------------------------


class Pipeline:
    def __init__(self, triage: Triage, input_rails: InputRails, output_rails: OutputRails,
                 recorder: Recorder) -> None:
        self.triage = triage
        self.input_rails = input_rails
        self.output_rails = output_rails
        self.recorder = recorder

    async def screen(self, ex: Exchange) -> InputVerdict:
        """Triage then input rails. Runs before any response byte, so failures keep their status."""
        t0 = time.perf_counter()
        ex.triage = await self.triage.classify(ex)
        t1 = time.perf_counter()
        verdict = await self.input_rails.check_input(ex)
        ex.timings["triage"] = t1 - t0
        ex.timings["input_rails"] = time.perf_counter() - t1
        ex.decisions.extend(verdict.decisions)
        record_decisions(verdict.decisions)
        ex.model_messages = verdict.messages
        if verdict.block is not None:
            metrics.REFUSALS.labels("policy").inc()
        return verdict

    async def complete(self, ex: Exchange, model: ChatModel, verdict: InputVerdict) -> str:
        """Run the model and the output rails; return the answer text (finish reason on `ex`)."""
        if verdict.block is not None:
            return self._blocked(ex, verdict.block)
        t0 = time.perf_counter()
        reply = await model.complete(ex.request, verdict.messages or ex.request.messages)
        t1 = time.perf_counter()
        ex.timings["model"] = t1 - t0
        ex.model_text, ex.usage, ex.finish_reason = reply.text, reply.usage, reply.finish_reason
        out = await self.output_rails.check_output(ex, reply.text)
        ex.timings["output_rails"] = time.perf_counter() - t1
        self._apply_output(ex, out)
        if out.block is not None:
            return self._blocked(ex, out.block)
        text = out.text if out.text is not None else reply.text
        if verdict.disclaimer:
            text += verdict.disclaimer
        ex.response_text = text
        return text

    async def stream(self, ex: Exchange, events: AsyncIterator[StreamEvent],
                     verdict: InputVerdict) -> AsyncIterator[tuple[str, FinishReason | None]]:
        """Yield (text, finish_reason) pieces checked by the streaming output guard."""
        if verdict.block is not None:
            yield self._blocked(ex, verdict.block), "content_filter"
            return
        guard = self.output_rails.stream_guard(ex)
        parts: list[str] = []
        t0 = time.perf_counter()
        async for event in events:
            if event.usage is not None:
                ex.usage = event.usage
            if event.finish_reason is not None:
                ex.finish_reason = event.finish_reason
            if not event.text:
                continue
            parts.append(event.text)
            step = await guard.feed(event.text)
            if self._stream_step(ex, step):
                yield step.release, None
            if step.block is not None:
                ex.model_text = "".join(parts)
                yield self._blocked(ex, step.block), "content_filter"
                return
        ex.timings["model"] = time.perf_counter() - t0
        ex.model_text = "".join(parts)
        step = await guard.finish()
        if self._stream_step(ex, step):
            yield step.release, None
        if step.block is not None:
            yield self._blocked(ex, step.block), "content_filter"
            return
        if verdict.disclaimer:
            yield verdict.disclaimer, None
        yield "", ex.finish_reason or "stop"  # type: ignore[misc]

    def _stream_step(self, ex: Exchange, step: StreamStep) -> bool:
        if step.decisions:
            ex.decisions.extend(step.decisions)
            record_decisions(step.decisions)
        if step.release:
            ex.response_text += step.release
            return True
        return False

    def _apply_output(self, ex: Exchange, out: OutputVerdict) -> None:
        ex.decisions.extend(out.decisions)
        record_decisions(out.decisions)
        if out.refused:
            ex.flags.add("model_refused")

    def _blocked(self, ex: Exchange, decision: RailDecision) -> str:
        ex.finish_reason = "content_filter"
        message = decision.message or "I'm sorry, but I can't help with that."
        ex.response_text += message
        return message

    def finish(self, ex: Exchange) -> None:
        """Derive flags, count them, hand the exchange to the recorder. Never raises into the route."""
        ex.timings["total"] = time.time() - ex.started_at
        ex.flags = derive_flags(ex)
        if "model_refused" in ex.flags:
            metrics.REFUSALS.labels("model").inc()
        if "over_refused" in ex.flags:
            metrics.REFUSALS.labels("over_refusal").inc()
        self.recorder.record(ex)
