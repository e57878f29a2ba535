"""The exchange record: what storage keeps and what `finetune/` reads. This type is the contract."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from guard.pipeline import Exchange

FLAGS = (
    "blocked_input",
    "blocked_output",
    "model_refused",
    "over_refused",
    "unsafe_compliance",
    "would_block",
    "flagged_for_review",
    "negative_feedback",
)


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str
    content: str


class RecordedToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    arguments: str
    id: str | None = None


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rail: str
    stage: str
    result: str
    mode: str
    action: str | None = None
    score: float | None = None
    latency_s: float = 0.0


class AppliedOverride(BaseModel):
    """A review that overrode the classifier on this exchange (instant correction)."""

    model_config = ConfigDict(extra="forbid")
    override_id: int
    review_id: int
    exchange_id: str  # the reviewed exchange
    label: str
    similarity: float
    classifier_labels: list[str]  # what the classifier decided on its own


class ExchangeRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exchange_id: str
    tenant: str
    profile: str | None = None
    api_key_hash: str | None = None
    created_at: datetime
    model: str
    model_version: str | None = None
    upstream_model: str | None = None  # upstream mode: the model the upstream API says answered
    rails_hash: str | None = None
    messages: list[Message]
    # What the model was sent, when the input rails rewrote the conversation (a safe-completion instruction,
    # redaction); None when it got `messages` as they came. Training pairs are built on this: the model learns
    # from the input it actually answered.
    model_messages: list[Message] | None = None
    response: str
    model_response: str = ""  # the model's own text before output rails replaced or masked it
    tool_calls: list[RecordedToolCall] = Field(default_factory=list)  # what the model asked to call (even if blocked)
    triage_version: str | None = None
    triage_scores: dict[str, float] = Field(default_factory=dict)
    triage_labels: list[str] = Field(default_factory=list)  # after a review override, when `override` is set
    override: AppliedOverride | None = None
    output_scores: dict[str, float] = Field(default_factory=dict)
    decisions: list[Decision] = Field(default_factory=list)
    flags: list[str] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    stream: bool = False
    finish_reason: str | None = None
    error: str | None = None

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    @classmethod
    def from_exchange(cls, ex: Exchange, mask: Any = None) -> ExchangeRecord:
        """`mask` is a callable str -> str (PII masking) applied to every stored text."""
        m = mask or (lambda s: s)
        return cls(
            exchange_id=ex.id,
            tenant=ex.tenant,
            profile=ex.profile,
            api_key_hash=ex.api_key_hash,
            created_at=datetime.fromtimestamp(ex.started_at, UTC),
            model=ex.model,
            model_version=ex.model_version,
            upstream_model=ex.upstream_model,
            rails_hash=ex.rails_hash,
            messages=[Message(role=msg.role, content=m(msg.text)) for msg in ex.messages],
            model_messages=[Message(role=msg.role, content=m(msg.text)) for msg in ex.model_messages]
            if ex.model_messages
            else None,
            response=m(ex.response_text),
            model_response=m(ex.model_text),
            tool_calls=[RecordedToolCall(name=c.name, arguments=m(c.arguments), id=c.id) for c in ex.tool_calls],
            triage_version=ex.triage.version or None if ex.triage else None,
            triage_scores=dict(ex.triage.scores) if ex.triage else {},
            triage_labels=list(ex.triage.labels) if ex.triage else [],
            override=_applied(ex),
            output_scores=dict(ex.output_triage.scores) if ex.output_triage else {},
            decisions=[
                Decision(
                    rail=d.rail,
                    stage=d.stage,
                    result=d.result,
                    mode=d.mode,
                    action=d.action,
                    score=d.score,
                    latency_s=d.latency_s,
                )
                for d in ex.decisions
            ],
            flags=sorted(ex.flags),
            timings=dict(ex.timings),
            stream=ex.stream,
            finish_reason=ex.finish_reason,
            error=ex.error,
        )


def _applied(ex: Exchange) -> AppliedOverride | None:
    c = ex.correction
    if c is None:
        return None
    return AppliedOverride(
        override_id=c.override_id,
        review_id=c.review_id,
        exchange_id=c.exchange_id,
        label=c.label,
        similarity=round(c.similarity, 4),
        classifier_labels=list(c.classifier_labels),
    )
