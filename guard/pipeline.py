"""The request pipeline: triage -> input rails -> model -> output rails -> record.

Each stage is a small protocol; `create_app` plugs real implementations in. The routes only call
`Pipeline.handle`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from guard import metrics
from guard.deadline import Deadline, until, within
from guard.domain import (
    BLOCKED,
    Answer,
    Delta,
    JsonObject,
    Message,
    ModelReply,
    StreamEvent,
    ToolCall,
    Verbatim,
    assemble_tool_calls,
)
from guard.errors import GuardError
from guard.taxonomy import HARMFUL
from guard.wire import ChatCompletionRequest, Envelope, Usage

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ModelReply", "StreamEvent"]  # re-exported: backends and tests import them from here

ANSWERED = ("stop", "length", "tool_calls", "function_call")  # finish reasons of an answer the model gave
Stage = Literal["input", "output"]
RailResult = Literal["pass", "block", "mask", "would_block", "error", "flag"]
Mode = Literal["enforce", "shadow"]


@dataclass(frozen=True, slots=True)
class TriageResult:
    """Sigmoid score per label, the labels over their thresholds, and the sentence embedding."""

    scores: dict[str, float]
    labels: tuple[str, ...] = ()
    embedding: np.ndarray | None = None  # vector from the same forward pass (custom intents); not recorded
    device: str = "none"
    # The classifier's calibrated per-label thresholds (the model's own mapping, shared, not copied): rails
    # tiers written relative to them (`threshold_scale`) follow a retrained classifier without edits.
    thresholds: Mapping[str, float] = field(default_factory=dict)
    version: str = ""  # the classifier version that scored it (they change under a running proxy: hot swap)

    @property
    def harmful(self) -> bool:
        return any(label in HARMFUL for label in self.labels)


@dataclass(frozen=True, slots=True)
class CorrectionMatch:
    """A reviewed text this request paraphrases closely enough that the review overrides the classifier."""

    override_id: int
    review_id: int
    exchange_id: str  # the reviewed exchange
    label: str  # the review's label (false_positive, unsafe, correct)
    similarity: float
    classifier_labels: tuple[str, ...]  # what the classifier decided before the override

    @property
    def header(self) -> str:
        return f"review={self.review_id}; override={self.override_id}; label={self.label}"


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
    messages: list[Message] | None = None  # rewritten conversation for the model (redaction, instructions)
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
    refused: bool = False  # the model refused (known once the answer is complete)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which rails decide an exchange: the resolved profile and the rails config's hash."""

    profile: str | None
    rails_hash: str | None


@dataclass(slots=True)
class Exchange:
    """Everything the proxy saw and decided about one request; recorded at the end. The conversation is in the
    project's own terms; `call` is the client's request in its wire form, for the model backend only."""

    id: str
    tenant: str
    messages: list[Message]
    model: str = ""
    stream: bool = False
    choices: int = 1  # how many answers the client asked for (`n`)
    include_usage: bool = False  # a streamed answer ends with a usage chunk
    call: ChatCompletionRequest | None = None
    api_key_hash: str | None = None
    requested_profile: str | None = None  # the profile header, once tenancy allowed it
    profile: str | None = None  # the profile the rails decided under
    started_at: float = field(default_factory=time.time)
    model_version: str | None = None
    upstream_model: str | None = None  # the model the upstream says answered (its body's or chunks' `model`)
    rails_hash: str | None = None
    triage: TriageResult | None = None
    correction: CorrectionMatch | None = None  # a review overrode the classifier's result (`triage`)
    output_triage: TriageResult | None = None
    decisions: list[RailDecision] = field(default_factory=list)
    model_messages: list[Message] | None = None
    response_text: str = ""
    model_text: str = ""  # what the model said before output rails changed it
    tool_calls: tuple[ToolCall, ...] = ()  # the calls the model asked for (first choice), blocked or not
    finish_reason: str | None = None
    usage: Usage | None = None
    flags: set[str] = field(default_factory=set)
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def of(
        cls,
        messages: list[Message],
        *,
        tenant: str,
        profile: str | None = None,
        stream: bool = False,
        id: str | None = None,
    ) -> Exchange:
        """An exchange for a conversation screened outside the proxy (rails cases, LangChain, NeMo, gates)."""
        return cls(
            id=id or uuid.uuid4().hex, tenant=tenant, messages=messages, requested_profile=profile, stream=stream
        )


@runtime_checkable
class Triage(Protocol):
    """The classifier, for both directions: the request's conversation and a piece of the model's answer."""

    async def classify(self, exchange: Exchange) -> TriageResult | None: ...

    async def score_text(self, text: str) -> TriageResult | None:
        """The classifier on one text of the model's answer ("refusal" joins the labels over threshold)."""
        ...


class Corrections(Protocol):
    def correct(self, tenant: str, triage: TriageResult) -> tuple[TriageResult, CorrectionMatch] | None:
        """The triage result a reviewed close paraphrase imposes, or None."""
        ...


class InputRails(Protocol):
    def select(self, exchange: Exchange) -> Selection:
        """The profile and config this exchange runs under (an unknown requested profile raises)."""
        ...

    def prescreen(self, exchange: Exchange) -> InputVerdict:
        """The cheap rules (length, patterns), before the classifier runs; a block here ends the exchange."""
        ...

    async def check_input(self, exchange: Exchange, early: InputVerdict | None = None) -> InputVerdict:
        """Every input rule, deciding from `exchange.triage`; `early` is `prescreen`'s verdict (not redone)."""
        ...


class OutputRails(Protocol):
    def wants_scores(self, exchange: Exchange) -> bool:
        """Whether the output rules decide from classifier scores (else the answer is not classified)."""
        ...

    async def check_output(
        self, exchange: Exchange, text: str, scores: TriageResult | None = None, *, tool_calls: bool = False
    ) -> OutputVerdict:
        """`scores`: the classifier on `text`. `tool_calls`: `text` is the answer's tool calls (name and
        arguments), not prose: no refusal check."""
        ...

    def scoring_failed(self, exchange: Exchange, exc: Exception) -> OutputVerdict:
        """The verdict when the classifier failed on the answer (the rails' error policy decides)."""
        ...

    def stream_guard(self, exchange: Exchange) -> StreamGuard: ...

    def relays(self, exchange: Exchange) -> bool:
        """Whether no output rule can hold back, change or block any of this exchange's answer (a streamed
        answer may then reach the client as the upstream's own bytes)."""
        ...


class StreamGuard(Protocol):
    """Windowed output rails: `feed`/`finish` buffer the model's text and name the window due for a check;
    `check` decides on it from the classifier's scores, which the pipeline computes in between."""

    def feed(self, text: str) -> str | None: ...

    def finish(self) -> str | None: ...

    async def check(self, window: str, scores: TriageResult | None, *, final: bool) -> StreamStep: ...

    def scoring_failed(self, exc: Exception) -> StreamStep: ...


class ChatModel(Protocol):
    name: str

    @property
    def version(self) -> str | None: ...

    # `messages`: the conversation as the input rails rewrote it; None sends the client's request as it came.
    async def complete(self, request: ChatCompletionRequest | None, messages: list[Message] | None) -> ModelReply: ...

    def stream(
        self, request: ChatCompletionRequest | None, messages: list[Message] | None
    ) -> AsyncIterator[StreamEvent]: ...


class Recorder(Protocol):
    def record(self, exchange: Exchange) -> None: ...


# Pass-through stages ------------------------------------------------------------------------------


class NoTriage:
    async def classify(self, exchange: Exchange) -> TriageResult | None:
        return None

    async def score_text(self, text: str) -> TriageResult | None:
        return None


class NoCorrections:
    def correct(self, tenant: str, triage: TriageResult) -> tuple[TriageResult, CorrectionMatch] | None:
        return None


class PassStreamGuard:
    def feed(self, text: str) -> str | None:
        return text

    def finish(self) -> str | None:
        return None

    async def check(self, window: str, scores: TriageResult | None, *, final: bool) -> StreamStep:
        return StreamStep(release=window)

    def scoring_failed(self, exc: Exception) -> StreamStep:
        raise exc  # nothing asked for scores


class NoRails:
    def select(self, exchange: Exchange) -> Selection:
        return Selection(exchange.requested_profile, None)

    def prescreen(self, exchange: Exchange) -> InputVerdict:
        return InputVerdict()

    async def check_input(self, exchange: Exchange, early: InputVerdict | None = None) -> InputVerdict:
        return InputVerdict()

    def wants_scores(self, exchange: Exchange) -> bool:
        return False

    async def check_output(
        self, exchange: Exchange, text: str, scores: TriageResult | None = None, *, tool_calls: bool = False
    ) -> OutputVerdict:
        return OutputVerdict()

    def scoring_failed(self, exchange: Exchange, exc: Exception) -> OutputVerdict:
        raise exc  # nothing asked for scores

    def stream_guard(self, exchange: Exchange) -> StreamGuard:
        return PassStreamGuard()

    def relays(self, exchange: Exchange) -> bool:
        return True


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
    answered = ex.finish_reason in ANSWERED and "blocked_input" not in flags
    if "model_refused" in flags and not judged_harmful:
        flags.add("over_refused")
    if judged_harmful and answered and "model_refused" not in flags:
        flags.add("unsafe_compliance")
    if any(d.stage == "output" and d.blocks for d in ex.decisions):
        flags.add("unsafe_compliance")  # the model wrote what an output rail had to stop
    return flags


def record_decisions(decisions: list[RailDecision]) -> None:
    for d in decisions:
        metrics.child(metrics.RAIL_EVALUATIONS, d.rail, d.stage, d.result, d.mode).inc()
        metrics.child(metrics.RAIL_LATENCY, d.stage).observe(d.latency_s)


# Orchestration -------------------------------------------------------------------------------------

REFUSAL_MESSAGE = "I'm sorry, but I can't help with that."


@dataclass(slots=True)
class Completed:
    """A whole answer: the checked choices, and the model's reply they came from (None when input-blocked)."""

    answers: list[Answer]
    reply: ModelReply | None = None


class Streamed:
    """An answer being streamed: checked deltas, and the envelope of the upstream's chunks (None: write our own).
    `verbatim`: the stream is the upstream's own bytes (`Verbatim` pieces, its usage chunk included), up to its
    `[DONE]`."""

    def __init__(
        self, deltas: AsyncIterator[Delta | Verbatim], envelope: Envelope | None, *, verbatim: bool = False
    ) -> None:
        self.deltas = deltas
        self.envelope = envelope
        self.verbatim = verbatim

    def __aiter__(self) -> AsyncIterator[Delta | Verbatim]:
        return self.deltas

    async def aclose(self) -> None:
        await self.deltas.aclose()  # type: ignore[attr-defined]


@dataclass(slots=True)
class _Choice:
    """One choice of a stream, as the pipeline follows it."""

    guard: StreamGuard = field(default_factory=PassStreamGuard)
    parts: list[str] = field(default_factory=list)  # what the model said
    released: list[str] = field(default_factory=list)  # what the client got
    held: list[Delta] = field(default_factory=list)  # tool-call fragments, sent once the calls are checked
    logprobs: list[object] = field(default_factory=list)  # waiting for the text they belong to to be released
    refusal: str = ""
    finish: str | None = None
    blocked: bool = False
    tool_calls: tuple[ToolCall, ...] = ()

    def take_logprobs(self) -> list[object] | None:
        out, self.logprobs = self.logprobs or None, []
        return out

    def assemble_calls(self) -> None:
        """The choice's tool calls from the fragments held so far."""
        self.tool_calls = assemble_tool_calls(
            [f for d in self.held for f in d.tool_calls], [f for d in self.held for f in d.function_call]
        )


class Pipeline:
    def __init__(
        self,
        triage: Triage,
        input_rails: InputRails,
        output_rails: OutputRails,
        recorder: Recorder,
        corrections: Corrections | None = None,
        *,
        timeout_s: float | None = None,
    ) -> None:
        self.triage = triage
        self.input_rails = input_rails
        self.output_rails = output_rails
        self.recorder = recorder
        self.corrections: Corrections = corrections or NoCorrections()
        self.timeout_s = timeout_s  # the whole exchange, streamed answers included (GUARD_REQUEST_TIMEOUT_S)

    async def handle(self, ex: Exchange, model: ChatModel) -> Completed | Streamed:
        """One exchange end to end: triage, input rails, model, output rails, record. A failure before the
        first response byte is raised (the route maps it to its status); the exchange is recorded either way."""
        deadline = None if self.timeout_s is None else Deadline(self.timeout_s)
        try:
            if ex.stream:
                verdict = await within(deadline, self.screen(ex))
                return await self._open_stream(ex, model, verdict, deadline)
            done = await within(deadline, self._complete(ex, model))
        except BaseException as exc:
            if deadline is not None:
                deadline.cancel()
            if isinstance(exc, GuardError):
                ex.error = exc.code
                exc.exchange_id = ex.id  # type: ignore[attr-defined]  # the error response names the exchange too
                self.finish(ex)
            elif isinstance(exc, asyncio.CancelledError):  # the client hung up (its work is cancelled) or shutdown
                ex.error = "client_disconnected"
                self.finish(ex)
            raise
        if deadline is not None:
            deadline.cancel()
        self.finish(ex)
        return done

    async def screen(self, ex: Exchange) -> InputVerdict:
        """Cheap rules, triage, then the other input rules: how the proxy presents a prompt to the model. Every
        "screen a prompt" caller (rails cases, LangChain, NeMo actions, the deployed-view gate) runs this."""
        t0 = time.perf_counter()
        chosen = self.input_rails.select(ex)
        ex.profile, ex.rails_hash = chosen.profile, chosen.rails_hash
        verdict = self.input_rails.prescreen(ex)
        t1 = tc = time.perf_counter()
        if verdict.block is None:  # an oversized or pattern-blocked request never reaches the classifier
            ex.triage = await self.triage.classify(ex)
            tc = time.perf_counter()
            corrected = self.corrections.correct(ex.tenant, ex.triage) if ex.triage is not None else None
            if corrected is not None:
                ex.triage, ex.correction = corrected
            t1 = time.perf_counter()
            verdict = await self.input_rails.check_input(ex, verdict)
        ex.timings["triage"] = t1 - t0
        ex.timings["input_rails"] = time.perf_counter() - t1
        decisions = list(verdict.decisions)
        if ex.correction is not None:
            decisions.insert(0, _correction_decision(ex.correction, t1 - tc))
        ex.decisions.extend(decisions)
        record_decisions(decisions)
        ex.model_messages = verdict.messages
        if verdict.block is not None:
            metrics.child(metrics.REFUSALS, "policy").inc()
        return verdict

    async def classify_output(self, ex: Exchange, text: str) -> TriageResult | None:
        """The classifier on a piece of the answer (asked only when the output rules decide from scores)."""
        scores = await self.triage.score_text(text)
        if scores is not None:
            ex.output_triage = scores
        return scores

    async def check_output(self, ex: Exchange, text: str, *, tool_calls: bool = False) -> OutputVerdict:
        """Output rules on a whole text, deciding from the classifier's scores on it. A classifier failure
        is the rails' to decide (fail closed or open): it reaches them as an error decision, not a crash."""
        scores = None
        if self.output_rails.wants_scores(ex):
            try:
                scores = await self.classify_output(ex, text)
            except Exception as exc:
                return self.output_rails.scoring_failed(ex, exc)
        return await self.output_rails.check_output(ex, text, scores, tool_calls=tool_calls)

    async def stream_step(self, ex: Exchange, guard: StreamGuard, window: str | None, *, final: bool) -> StreamStep:
        """A stream guard's window classified and decided (nothing when no window is due)."""
        if window is None:
            return StreamStep()
        scores = None
        if self.output_rails.wants_scores(ex):
            try:
                scores = await self.classify_output(ex, window)
            except Exception as exc:
                return guard.scoring_failed(exc)
        return await guard.check(window, scores, final=final)

    # Whole answers ----------------------------------------------------------------------------------------
    async def _complete(self, ex: Exchange, model: ChatModel) -> Completed:
        verdict = await self.screen(ex)
        if verdict.block is not None:
            answers = [self._blocked(i, verdict.block) for i in range(ex.choices)]
            self._settle(ex, answers[0], None)
            return Completed(answers)
        t0 = time.perf_counter()
        reply = await model.complete(ex.call, verdict.messages)
        t1 = time.perf_counter()
        ex.timings["model"] = t1 - t0
        metrics.child(metrics.UPSTREAM_LATENCY, model.name).observe(t1 - t0)
        ex.usage = reply.usage
        ex.upstream_model = _served_by(reply.body)
        answers = [await self.check_answer(ex, a, verdict.disclaimer) for a in reply.choices]
        ex.timings["output_rails"] = time.perf_counter() - t1
        self._settle(ex, answers[0], reply.choices[0])
        return Completed(answers, reply)

    async def check_answer(self, ex: Exchange, answer: Answer, disclaimer: str | None = None) -> Answer:
        """One choice through the output rails: its text, then its tool calls' arguments (which a refusal
        check never reads: a tool-call-only answer is not a refusal)."""
        text = answer.text
        if not answer.tool_only:
            out = await self.check_output(ex, text)
            self._apply_output(ex, out)
            if out.block is not None:
                return self._blocked(answer.index, out.block)
            text = out.text if out.text is not None else text
        if answer.tool_calls:
            out = await self.check_output(ex, _calls_text(answer.tool_calls), tool_calls=True)
            self._apply_output(ex, out, refusals=False)
            if out.block is not None:
                return self._blocked(answer.index, out.block)
        if answer.refusal:
            ex.flags.add("model_refused")
        if disclaimer and text:
            text += disclaimer
        if text == answer.text:
            return answer
        return replace(answer, text=text, changed=True)

    def _settle(self, ex: Exchange, answer: Answer, model: Answer | None) -> None:
        """The one place the answer's fields of the exchange are written (first choice)."""
        ex.response_text = answer.text or answer.refusal or ""
        ex.finish_reason = answer.finish_reason
        if model is not None:
            ex.model_text = model.text or model.refusal or ""
            ex.tool_calls = model.tool_calls

    # Streams ----------------------------------------------------------------------------------------------
    async def _open_stream(
        self, ex: Exchange, model: ChatModel, verdict: InputVerdict, deadline: Deadline | None
    ) -> Streamed:
        if verdict.block is not None:
            if deadline is not None:
                deadline.cancel()
            return Streamed(self._stream(ex, None, verdict), None)
        events = model.stream(ex.call, verdict.messages)
        if deadline is not None:
            events = until(events, deadline)
        # Wait for the first event before answering, so an unreachable upstream is a 502, not a broken 200.
        try:
            first = await anext(events, None)
        except BaseException:
            await events.aclose()  # type: ignore[attr-defined]
            raise
        ex.upstream_model = _served_by(first.envelope if first else None)
        # Relayed when nothing could change the answer and the backend has the bytes (an HTTP upstream): the
        # client gets what the upstream sent, and the proxy writes no frame of its own.
        verbatim = first is not None and bool(first.raw) and not verdict.disclaimer and self.output_rails.relays(ex)
        stream = self._stream(ex, _chain(first, events), verdict, verbatim=verbatim)
        return Streamed(stream, first.envelope if first else None, verbatim=verbatim)

    async def _stream(
        self,
        ex: Exchange,
        events: AsyncIterator[StreamEvent] | None,
        verdict: InputVerdict,
        *,
        verbatim: bool = False,
    ) -> AsyncIterator[Delta | Verbatim]:
        try:
            if events is None or verdict.block is not None:
                for i in range(ex.choices):
                    yield self._blocked_delta(i, verdict.block)  # type: ignore[arg-type]
                ex.response_text, ex.finish_reason = verdict.block.message or REFUSAL_MESSAGE, BLOCKED  # type: ignore[union-attr]
                return
            choices: dict[int, _Choice] = {}
            pieces: AsyncIterator[Delta | Verbatim] = (
                self._relayed(ex, events, choices) if verbatim else self._checked(ex, events, choices, verdict)
            )
            try:
                async for piece in pieces:
                    yield piece
            finally:
                self._settle_stream(ex, choices.get(0))
        except GuardError as exc:
            ex.error = exc.code
            raise
        except BaseException:
            ex.error = ex.error or "client_disconnected"
            raise
        finally:
            if events is not None:
                await events.aclose()  # type: ignore[attr-defined]
            self.finish(ex)

    async def _checked(
        self, ex: Exchange, events: AsyncIterator[StreamEvent], choices: dict[int, _Choice], verdict: InputVerdict
    ) -> AsyncIterator[Delta]:
        t0 = time.perf_counter()
        async for event in events:
            if event.usage is not None:
                ex.usage = event.usage
            for delta in event.deltas:
                choice = choices.get(delta.index)
                if choice is None:
                    choice = choices[delta.index] = _Choice(self.output_rails.stream_guard(ex))
                for out in await self._feed(ex, choice, delta):
                    yield out
            if len(choices) == ex.choices and all(c.blocked for c in choices.values()):
                break  # nothing more will be shown: stop the model generating
        ex.timings["model"] = time.perf_counter() - t0
        for index in sorted(choices):
            for out in await self._close(ex, index, choices[index], verdict.disclaimer):
                yield out
        first = choices.get(0)
        ex.finish_reason = (BLOCKED if first.blocked else first.finish or "stop") if first else "stop"

    async def _relayed(
        self, ex: Exchange, events: AsyncIterator[StreamEvent], choices: dict[int, _Choice]
    ) -> AsyncIterator[Verbatim]:
        """The upstream's bytes as they came; the exchange still learns what they said, for the record."""
        t0 = time.perf_counter()
        async for event in events:
            if event.usage is not None:
                ex.usage = event.usage
            for d in event.deltas:
                c = choices.get(d.index) or choices.setdefault(d.index, _Choice())
                c.finish = d.finish_reason or c.finish
                if d.text:
                    c.parts.append(d.text)
                    c.released.append(d.text)
                if d.refusal:
                    c.refusal += d.refusal
                    ex.flags.add("model_refused")
                if d.tool_calls or d.function_call:
                    c.held.append(d)
            if event.raw:
                yield Verbatim(event.raw)
        ex.timings["model"] = time.perf_counter() - t0
        for c in choices.values():
            c.assemble_calls()
        first = choices.get(0)
        ex.finish_reason = (first.finish or "stop") if first else "stop"

    @staticmethod
    def _settle_stream(ex: Exchange, first: _Choice | None) -> None:
        """The answer's fields of the exchange, from the first choice; also when the stream broke off."""
        if first is not None:
            ex.model_text = "".join(first.parts) or first.refusal
            ex.response_text = "".join(first.released)
            ex.tool_calls = first.tool_calls

    async def _feed(self, ex: Exchange, c: _Choice, d: Delta) -> list[Delta]:
        if c.blocked:
            return []
        out: list[Delta] = []
        c.finish = d.finish_reason or c.finish
        if d.tool_calls or d.function_call:
            c.held.append(Delta(d.index, tool_calls=d.tool_calls, function_call=d.function_call))
        if d.logprobs:
            c.logprobs += d.logprobs
        if d.refusal:
            c.refusal += d.refusal
            ex.flags.add("model_refused")
            out.append(Delta(d.index, refusal=d.refusal))
        if d.text:
            c.parts.append(d.text)
            step = await self.stream_step(ex, c.guard, c.guard.feed(d.text), final=False)
            self._step(ex, c, d.index, step, out)
        return out

    async def _close(self, ex: Exchange, index: int, c: _Choice, disclaimer: str | None) -> list[Delta]:
        """The end of one choice: the guard's last window, then its tool calls checked and released whole."""
        out: list[Delta] = []
        if c.blocked:
            return out
        # A tool-call-only choice has no text for the guard (an empty text would score as a refusal).
        if c.parts or not c.held:
            step = await self.stream_step(ex, c.guard, c.guard.finish(), final=True)
            if self._step(ex, c, index, step, out):
                return out
        if c.held:
            c.assemble_calls()
            verdict = await self.check_output(ex, _calls_text(c.tool_calls), tool_calls=True)
            self._apply_output(ex, verdict, refusals=False)
            if verdict.block is not None:
                c.blocked = True
                out.append(self._blocked_delta(index, verdict.block))
                c.released.append(out[-1].text)
                return out
            out += c.held
        if disclaimer and c.parts:
            c.released.append(disclaimer)
            out.append(Delta(index, text=disclaimer))
        out.append(Delta(index, finish_reason=c.finish or "stop"))
        return out

    def _step(self, ex: Exchange, c: _Choice, index: int, step: StreamStep, out: list[Delta]) -> bool:
        """Apply a guard step to a choice; True when it blocked."""
        if step.decisions:
            ex.decisions.extend(step.decisions)
            record_decisions(step.decisions)
        if step.refused:
            ex.flags.add("model_refused")
        if step.release:
            c.released.append(step.release)
            out.append(Delta(index, text=step.release, logprobs=c.take_logprobs()))
        if step.block is None:
            return False
        c.blocked = True
        out.append(self._blocked_delta(index, step.block))
        c.released.append(out[-1].text)
        return True

    # Shared -----------------------------------------------------------------------------------------------
    def _apply_output(self, ex: Exchange, out: OutputVerdict, *, refusals: bool = True) -> None:
        ex.decisions.extend(out.decisions)
        record_decisions(out.decisions)
        if out.refused and refusals:
            ex.flags.add("model_refused")

    @staticmethod
    def _blocked(index: int, decision: RailDecision) -> Answer:
        return Answer(index, decision.message or REFUSAL_MESSAGE, finish_reason=BLOCKED, changed=True)

    @staticmethod
    def _blocked_delta(index: int, decision: RailDecision) -> Delta:
        return Delta(index, text=decision.message or REFUSAL_MESSAGE, finish_reason=BLOCKED)

    def finish(self, ex: Exchange) -> None:
        """Derive flags, count them, hand the exchange to the recorder. Never raises into the route."""
        ex.timings["total"] = time.time() - ex.started_at
        ex.flags = derive_flags(ex)
        if "model_refused" in ex.flags:
            metrics.child(metrics.REFUSALS, "model").inc()
        if "over_refused" in ex.flags:
            metrics.child(metrics.REFUSALS, "over_refusal").inc()
        self.recorder.record(ex)


class Rails(InputRails, OutputRails, Protocol):
    """A rails engine: input and output rails in one object."""


class TextScorer(Protocol):
    """A classifier over one text (what `Triage.score_text` is, without a conversation to classify)."""

    async def score_text(self, text: str) -> TriageResult: ...


def screener(triage: Triage | TextScorer | None, rails: Rails) -> Pipeline:
    """The pipeline's own screening (`Pipeline.screen`, `check_output`) for callers outside the proxy; `triage`
    is a triage stage, a text scorer (given the last user turn) or None."""
    if triage is None:
        stage: Triage = NoTriage()
    elif isinstance(triage, Triage):
        stage = triage
    else:
        stage = _ScoredTriage(triage)
    return Pipeline(stage, rails, rails, NoRecorder())


class _ScoredTriage:
    def __init__(self, scorer: TextScorer) -> None:
        self.scorer = scorer

    async def classify(self, exchange: Exchange) -> TriageResult | None:
        last = next((m.text for m in reversed(exchange.messages) if m.role == "user"), "")
        return await self.scorer.score_text(last)

    async def score_text(self, text: str) -> TriageResult | None:
        return await self.scorer.score_text(text)


def _correction_decision(match: CorrectionMatch, latency_s: float) -> RailDecision:
    """The override as a decision of its own, so that the record and the metrics show which review acted."""
    return RailDecision(
        "review_override", "input", "pass", "enforce", match.label, score=match.similarity, latency_s=latency_s
    )


def _served_by(body: JsonObject | None) -> str | None:
    name = (body or {}).get("model")
    return name[:256] if isinstance(name, str) and name else None


def _calls_text(calls: tuple[ToolCall, ...]) -> str:
    return "\n".join(c.text for c in calls)


async def _chain(first: StreamEvent | None, events: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
    try:
        if first is not None:
            yield first
        async for event in events:
            yield event
    finally:
        await events.aclose()  # type: ignore[attr-defined]
