"""A compact copy of an unsampled exchange, kept for a while in case its user sends feedback on it.

Only strings, numbers and tuples of them: the garbage collector stops tracking such tuples, so keeping
thousands costs the serving process nothing per collection (keeping the Exchange objects themselves did).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from guard.pipeline import Exchange
from guard.records import Decision, ExchangeRecord, Message

Snapshot = tuple[Any, ...]


def snapshot(ex: Exchange) -> Snapshot:
    return (
        ex.id,
        ex.tenant,
        ex.profile,
        ex.api_key_hash,
        ex.started_at,
        ex.model,
        ex.model_version,
        ex.rails_hash,
        tuple((m.role, m.text) for m in ex.messages),
        ex.response_text,
        ex.model_text,
        tuple(ex.triage.scores.items()) if ex.triage else (),
        tuple(ex.triage.labels) if ex.triage else (),
        tuple(ex.output_triage.scores.items()) if ex.output_triage else (),
        tuple((d.rail, d.stage, d.result, d.mode, d.action, d.score, d.latency_s) for d in ex.decisions),
        tuple(sorted(ex.flags)),
        tuple(ex.timings.items()),
        ex.stream,
        ex.finish_reason,
        ex.error,
    )


def record_from_snapshot(snap: Snapshot, mask: Any = None) -> ExchangeRecord:
    (
        exchange_id,
        tenant,
        profile,
        key_hash,
        started_at,
        model,
        model_version,
        rails_hash,
        messages,
        response,
        model_text,
        scores,
        labels,
        out_scores,
        decisions,
        flags,
        timings,
        stream,
        finish_reason,
        error,
    ) = snap
    m = mask or (lambda s: s)
    return ExchangeRecord(
        exchange_id=exchange_id,
        tenant=tenant,
        profile=profile,
        api_key_hash=key_hash,
        created_at=datetime.fromtimestamp(started_at, UTC),
        model=model,
        model_version=model_version,
        rails_hash=rails_hash,
        messages=[Message(role=role, content=m(text)) for role, text in messages],
        response=m(response),
        model_response=m(model_text),
        triage_scores=dict(scores),
        triage_labels=list(labels),
        output_scores=dict(out_scores),
        decisions=[
            Decision(rail=r, stage=st, result=res, mode=mode, action=a, score=sc, latency_s=lat)
            for r, st, res, mode, a, sc, lat in decisions
        ],
        flags=list(flags),
        timings=dict(timings),
        stream=stream,
        finish_reason=finish_reason,
        error=error,
    )
