"""The rest of the OpenAI surface: moderations (the triage classifier), embeddings (passed through), legacy
text completions (passed through the same pipeline as chat) and the Responses API (not yet: 501)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pydantic_core
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict

from guard import moderation, wire
from guard.domain import Message, ModelReply, StreamEvent
from guard.errors import GuardError, NotImplementedYet
from guard.hangup import EventStream, HangUp
from guard.pipeline import Exchange, Streamed
from guard.routes import (
    JSON,
    count,
    exchange_headers,
    new_exchange_id,
    outcome_of,
    parse_body,
    read_body,
    resources,
    sse_body,
    unless_hung_up,
)
from guard.tenancy import requested_profile

if TYPE_CHECKING:
    from guard.backends.http import HttpUpstream
    from guard.resources import Resources

more_router = APIRouter()


@more_router.post("/v1/moderations")
async def moderations(request: Request) -> Response:
    res = resources(request)
    principal = res.auth.tenant(request.headers.get("authorization"))
    req = moderation.parse(await read_body(request, res.settings.max_body_bytes))
    if res.triage is None or not hasattr(res.triage, "classify") or not hasattr(res.triage, "version"):
        raise NotImplementedYet("moderation needs the triage classifier; it is turned off (GUARD_TRIAGE_ENABLED)")
    body = await moderation.moderate(res.triage, req, principal.tenant, f"guardtune-triage-{res.triage.version}")
    count("moderations", "ok")
    return Response(pydantic_core.to_json(body), media_type=JSON)


@more_router.post("/v1/embeddings")
async def embeddings(request: Request) -> Response:
    """Passed through as sent (nothing in it is text a rail judges)."""
    res = resources(request)
    principal = res.auth.tenant(request.headers.get("authorization"))
    if res.limiter is not None:
        await res.limiter.admit(principal.tenant, principal.key_hash)
    body = await read_body(request, res.settings.max_body_bytes)
    _parse_embeddings(body)  # a request the upstream cannot read is the client's 400, not its 5xx
    upstream = _upstream(res, "embeddings")
    _, raw = await unless_hung_up(request, upstream.read("/embeddings", body))
    count("embeddings", "ok")
    return Response(raw, media_type=JSON)


@more_router.post("/v1/completions")
async def completions(request: Request) -> Response:
    """Legacy text completions through the chat pipeline: the prompt is screened as a user turn, each choice's
    text goes through the output rails (streamed in windows, as chat)."""
    res = resources(request)
    t0 = time.perf_counter()
    principal = res.auth.tenant(request.headers.get("authorization"))
    if res.limiter is not None:
        await res.limiter.admit(principal.tenant, principal.key_hash)
    req = _parse_text(await read_body(request, res.settings.max_body_bytes))
    model = TextCompletions(_upstream(res, "completions"), req)
    opts = req.stream_options
    ex = Exchange(
        id=new_exchange_id("cmpl-"),
        tenant=principal.tenant,
        messages=[Message.user(req.prompt_text)],
        model=req.model,
        stream=req.stream,
        choices=req.n or 1,
        include_usage=opts is not None and opts.include_usage,
        api_key_hash=principal.key_hash,
        requested_profile=requested_profile(
            res.rails, principal, request.headers.get(res.settings.profile_header), res.settings.profile_header
        ),
    )
    created = int(ex.started_at)
    with HangUp(request.receive) as hangup:  # a stream's response watches on until its last byte
        try:
            reply = await hangup.wait(res.pipeline.handle(ex, model))
        except GuardError as exc:
            count("completions", outcome_of(exc))
            raise
        if isinstance(reply, Streamed):
            own = {"id": ex.id, "object": "text_completion", "created": created, "model": ex.model}
            body = sse_body(ex, reply, t0, model.name, route="completions", frame=wire.text_chunk_frame, own=own)
            return EventStream(body, exchange_headers(ex), hangup.handover())
    headers = exchange_headers(ex)
    count("completions", "blocked" if ex.finish_reason == "content_filter" else "ok")
    out = wire.text_completion_body(reply.answers, reply.reply, exchange_id=ex.id, model=ex.model, created=created)
    return Response(out, media_type=JSON, headers=headers)


@more_router.post("/v1/responses")
async def responses(request: Request) -> Response:
    resources(request).auth.tenant(request.headers.get("authorization"))
    raise NotImplementedYet(
        "the Responses API is not supported yet: its input items and its output message, reasoning and tool-call "
        "items have no input/output rails in this proxy; use /v1/chat/completions"
    )


class TextCompletions:
    """The upstream's /completions as the pipeline's chat model."""

    name = "upstream"
    version = None

    def __init__(self, upstream: HttpUpstream, req: wire.TextCompletionRequest) -> None:
        self.upstream, self.req = upstream, req

    def _body(self, messages: list[Message] | None) -> bytes:
        if messages is None and self.req.raw is not None:
            return self.req.raw
        # Rewritten by the input rails: instructions they added go before the (possibly redacted) prompt.
        return self.req.with_prompt("\n\n".join(m.text for m in messages or ()))

    async def complete(self, request: Any, messages: list[Message] | None) -> ModelReply:
        from guard.backends.http import parse_reply

        data, raw = await self.upstream.read("/completions", self._body(messages))
        return parse_reply(data, raw, wire.text_reply_from_body)

    def stream(self, request: Any, messages: list[Message] | None) -> AsyncIterator[StreamEvent]:
        return self.upstream.stream_from("/completions", self._body(messages), wire.text_chunk_parts)


def _upstream(res: Resources, what: str) -> HttpUpstream:
    if res.models.upstream is None:
        raise NotImplementedYet(f"/v1/{what} is passed through to an upstream; this proxy serves a local model")
    return res.models.upstream


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    input: str | list[str] | list[int] | list[list[int]]


def _parse_embeddings(body: bytes) -> EmbeddingsRequest:
    return parse_body(EmbeddingsRequest.model_validate_json, body, "embeddings request")


def _parse_text(body: bytes) -> wire.TextCompletionRequest:
    return parse_body(wire.TextCompletionRequest.parse, body, "completion request")
