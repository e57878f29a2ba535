"""`POST /v1/feedback`: a tenant rates one of its own exchanges."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine

from guard.admin.deps import recorder, store_engine, tenant
from guard.errors import InvalidRequest, NotFound
from guard.store.db import insert_feedback
from guard.store.query import exchange_tenant


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    exchange_id: str = Field(min_length=1, max_length=64)
    rating: int = Field(ge=-1, le=1, description="-1 bad answer, 0 neutral, 1 good answer")
    comment: str | None = Field(None, max_length=4000)


def parse_feedback(body: bytes) -> FeedbackRequest:
    try:
        return FeedbackRequest.model_validate_json(body or b"{}")
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise InvalidRequest(
            f"invalid value for '{loc}': {err['msg']}" if loc else err["msg"], param=loc or None
        ) from None


def feedback_router() -> APIRouter:
    router = APIRouter()

    @router.post("/v1/feedback")
    async def post_feedback(request: Request, engine: Engine = Depends(store_engine)) -> Response:
        who = tenant(request)
        fb = parse_feedback(await request.body())
        owner = await asyncio.to_thread(exchange_tenant, engine, fb.exchange_id)
        writer = recorder(request)
        # Not stored (yet): this process, or any replica through Redis, may still vouch for it (queued, or a clean
        # exchange not sampled and kept for a while in case feedback comes).
        known = owner == who if owner is not None else bool(writer and await writer.claim(fb.exchange_id, who))
        if not known:  # other tenants' exchanges look exactly like missing ones
            kept = f" (clean exchanges are kept {writer.recent.ttl_s:g} s for feedback)" if writer else ""
            raise NotFound(
                f"no exchange '{fb.exchange_id}' for this API key: it was not stored, and no replica "
                f"still keeps it{kept}",
                param="exchange_id",
            )
        await asyncio.to_thread(insert_feedback, engine, fb.exchange_id, who, fb.rating, fb.comment)
        body = {"object": "feedback", "exchange_id": fb.exchange_id, "rating": fb.rating, "status": "recorded"}
        return Response(FeedbackAck.model_validate(body).model_dump_json(), media_type="application/json")

    return router


class FeedbackAck(BaseModel):
    object: str
    exchange_id: str
    rating: int
    status: str
