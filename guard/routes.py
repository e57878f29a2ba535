"""HTTP routes of the OpenAI-compatible surface. Request bodies are parsed by hand (pydantic-core on
bytes) rather than through FastAPI's dependency machinery: it is the per-request cost users compare."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from fastapi import APIRouter, Request, Response
from prometheus_client import Counter
from pydantic import ValidationError

from guard import metrics, wire
from guard.domain import Delta, Verbatim
from guard.errors import BodyTooLarge, ClientDisconnected, GuardError, InvalidRequest, NotReady, public_message
from guard.hangup import EventStream, HangUp
from guard.pipeline import Exchange, Streamed
from guard.resources import Resources
from guard.tenancy import requested_profile

JSON = "application/json"
ROUTE = "chat_completions"
Frame = Callable[..., bytes]  # (envelope, delta, *, role) -> one SSE frame
_T = TypeVar("_T")


def resources(request: Request) -> Resources:
    return request.app.state.resources


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"request body of {declared} bytes is over the {limit}-byte limit")
    # Straight from ASGI `receive` (Request.stream() costs an async generator per request).
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected("the client disconnected while sending its request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body is over the {limit}-byte limit")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def unless_hung_up(request: Request, work: Awaitable[_T]) -> _T:
    """`work`, cancelled as soon as the client disconnects (`ClientDisconnected` then; `guard.hangup`)."""
    with HangUp(request.receive) as hangup:
        return await hangup.wait(work)


def new_exchange_id(prefix: str = "chatcmpl-") -> str:
    return f"{prefix}{os.urandom(16).hex()}"  # 128 random bits, as uuid4 has, without building a UUID


def exchange_headers(ex: Exchange) -> dict[str, str]:
    """The exchange's id, and the review that overrode the classifier when one did (instant corrections)."""
    headers = {"x-guard-exchange-id": ex.id}
    if ex.correction is not None:
        headers["x-guard-override"] = ex.correction.header
    if ex.triage is not None and ex.triage.version:
        headers["x-guard-triage-version"] = ex.triage.version
    return headers


def _requests(outcome: str, route: str = ROUTE) -> Counter:
    return metrics.child(metrics.REQUESTS, route, outcome)


def count(route: str, outcome: str) -> None:
    _requests(outcome, route).inc()


def outcome_of(exc: GuardError) -> str:
    return "disconnected" if isinstance(exc, ClientDisconnected) else "error"


def parse_body(parse: Callable[[bytes], _T], body: bytes, what: str) -> _T:
    """`parse(body)`, with an empty body or a validation error raised as the client's 400 naming the field."""
    if not body:
        raise InvalidRequest(f"request body is empty; send a JSON {what}")
    try:
        return parse(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        if err["type"] == "json_invalid":
            raise InvalidRequest(f"malformed JSON: {err['msg']}", code="invalid_json") from None
        loc = ".".join(str(p) for p in err["loc"])
        raise InvalidRequest(f"invalid value for '{loc}': {err['msg']}", param=loc or None) from None


def parse_request(body: bytes) -> wire.ChatCompletionRequest:
    return parse_body(wire.ChatCompletionRequest.parse, body, "chat completion request")


router = APIRouter()


async def chat_completions(request: Request) -> Response:
    res = resources(request)
    t0 = time.perf_counter()
    principal = res.auth.tenant(request.headers.get("authorization"))
    if res.limiter is not None:
        await res.limiter.admit(principal.tenant, principal.key_hash)
    req = parse_request(await read_body(request, res.settings.max_body_bytes))
    model = res.models.get(req.model)
    profile = requested_profile(
        res.rails, principal, request.headers.get(res.settings.profile_header), res.settings.profile_header
    )
    opts = req.stream_options
    ex = Exchange(
        id=new_exchange_id(),
        tenant=principal.tenant,
        messages=wire.messages_from_wire(req.messages),
        model=req.model,
        stream=req.stream,
        choices=req.n or 1,
        include_usage=opts is not None and opts.include_usage,
        call=req,
        api_key_hash=principal.key_hash,
        requested_profile=profile,
        model_version=model.version,
    )
    with HangUp(request.receive) as hangup:  # a stream's response watches on until its last byte
        try:
            reply = await hangup.wait(res.pipeline.handle(ex, model))
        except GuardError as exc:
            _requests(outcome_of(exc)).inc()
            raise
        if isinstance(reply, Streamed):
            return EventStream(sse_body(ex, reply, t0, model.name), exchange_headers(ex), hangup.handover())
    headers = exchange_headers(ex)
    out = wire.completion_body(
        reply.answers, reply.reply, exchange_id=ex.id, model=req.model, created=int(ex.started_at), usage=ex.usage
    )
    _requests("blocked" if ex.finish_reason == "content_filter" else "ok").inc()
    return Response(out, media_type=JSON, headers=headers)


async def sse_body(
    ex: Exchange,
    stream: Streamed,
    t0: float,
    backend: str,
    *,
    route: str = ROUTE,
    frame: Frame = wire.chunk_frame,
    own: wire.Envelope | None = None,
) -> AsyncIterator[bytes]:
    """The client's event stream: the pipeline's deltas as chunk frames in the upstream's envelope."""
    envelope = stream.envelope or own or wire.own_envelope(ex.id, ex.model, int(ex.started_at))
    roles = frame is wire.chunk_frame
    outcome = "error"
    started: set[int] = set()
    # Frames that need not go out alone (a choice's finish) ride with the next write: each write is a send().
    pending = b""
    try:
        async for delta in stream:
            if isinstance(delta, Verbatim):
                if not started:
                    started.add(0)
                    metrics.child(metrics.TIME_TO_FIRST_TOKEN, backend).observe(time.perf_counter() - t0)
                yield delta.data
                continue
            if delta.index not in started:
                started.add(delta.index)
                if roles:
                    pending += frame(envelope, Delta(delta.index), role=True)
                if not started - {0}:
                    metrics.child(metrics.TIME_TO_FIRST_TOKEN, backend).observe(time.perf_counter() - t0)
            data = frame(envelope, delta)
            if delta.finish_reason is not None and not delta.text:
                pending += data
                continue
            yield pending + data
            pending = b""
        if ex.include_usage and ex.usage is not None and not stream.verbatim:
            pending += wire.usage_frame(envelope, ex.usage)
        yield pending + wire.SSE_DONE
        outcome = "blocked" if ex.finish_reason == "content_filter" else "ok"
    except GuardError as exc:
        # Headers are gone; OpenAI's convention for a mid-stream failure is an error frame.
        error = wire.ErrorBody(message=public_message(exc, ex.id), type=exc.type, code=exc.code)
        yield pending + wire.sse(wire.ErrorResponse(error=error))
    except BaseException:
        outcome = "disconnected"
        raise
    finally:
        await stream.aclose()
        _requests(outcome, route).inc()


@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    res = resources(request)
    res.auth.tenant(request.headers.get("authorization"))
    cards = [wire.ModelCard(id=name) for name in await res.models.names()]
    return Response(wire.ModelList(data=cards).model_dump_json(), media_type=JSON)


@router.get("/healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type=JSON)


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    res: Resources | None = getattr(request.app.state, "resources", None)
    if res is None:
        raise NotReady("starting")
    return Response(wire.ReadyStatus.model_validate(res.status()).model_dump_json(), media_type=JSON)


@router.get("/metrics")
async def prometheus() -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
