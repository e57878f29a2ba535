"""Admin JSON API: query exchanges, export JSONL, read one exchange, review it. Admin key only."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from sqlalchemy import Engine

from guard.admin.auth import require_admin
from guard.admin.deps import store_engine
from guard.admin.filters import Filters, parse_filters, parse_limit, parse_offset
from guard.admin.page import OverrideId, review_page_routes
from guard.admin.review import ReviewRequest, apply_now, save_review
from guard.errors import InvalidRequest, NotFound
from guard.store.overrides import active_overrides, revoke_override
from guard.store.query import (
    count_matching,
    fetch_feedback,
    fetch_record,
    fetch_records,
    fetch_reviews,
    iter_records,
)

JSON = "application/json"


def _json(data: Any) -> Response:
    import json

    return Response(json.dumps(data, default=str), media_type=JSON)


def exchange_detail(engine: Engine, exchange_id: str) -> dict[str, Any]:
    rec = fetch_record(engine, exchange_id)
    if rec is None:
        raise NotFound(f"no exchange '{exchange_id}'")
    return {
        "record": rec.model_dump(mode="json"),
        "reviews": [asdict(r) for r in fetch_reviews(engine, exchange_id=exchange_id)],
        "feedback": [asdict(f) for f in fetch_feedback(engine, exchange_id=exchange_id)],
    }


def _export_lines(engine: Engine, filters: Filters, limit: int | None) -> Iterator[bytes]:
    for rec in iter_records(engine, limit=limit, **filters.kwargs()):
        yield rec.model_dump_json().encode() + b"\n"


def _page(engine: Engine, criteria: dict[str, Any], request: Request) -> dict[str, Any]:
    limit, offset = parse_limit(request, 100), parse_offset(request)
    recs = fetch_records(engine, limit=limit, offset=offset, **criteria)
    total = count_matching(engine, **criteria)
    data = [r.model_dump(mode="json") for r in recs]
    return {"object": "list", "data": data, "total": total, "offset": offset, "limit": limit}


def override_json(o: Any, reach: float | None = None) -> dict[str, Any]:
    """`reach`: the cosine to the reviewed text a request needs on this replica (None: not served here yet)."""
    keep = ("id", "review_id", "exchange_id", "tenant", "profile", "label", "unsafe_label", "text", "created_by")
    return {**{k: getattr(o, k) for k in keep}, "created_at": o.created_at.isoformat(), "reach": reach}


def admin_router() -> APIRouter:
    """`/admin/...`: the JSON API (Bearer admin key or the page's session cookie) and the review page."""
    api = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])

    @api.get("/exchanges")
    async def list_exchanges(request: Request, engine: Engine = Depends(store_engine)) -> Response:
        filters = parse_filters(request)
        return _json(await asyncio.to_thread(_page, engine, filters.kwargs(), request))

    @api.get("/queue")
    async def review_queue(request: Request, engine: Engine = Depends(store_engine)) -> Response:
        """Flagged exchanges nobody has reviewed yet, or whose reviewers disagree, oldest first."""
        kw = {**parse_filters(request).kwargs(), "flagged": True, "needs_review": True}
        return _json(await asyncio.to_thread(_page, engine, kw, request))

    @api.get("/overrides")
    async def list_overrides(request: Request, engine: Engine = Depends(store_engine)) -> Response:
        """Active instant corrections: reviewed texts overriding the classifier for close paraphrases."""
        rows = await asyncio.to_thread(active_overrides, engine, tenant=request.query_params.get("tenant") or None)
        memory = getattr(getattr(request.app.state, "resources", None), "corrections", None)
        reaches = memory.reaches() if memory is not None else {}
        return _json({"object": "list", "data": [override_json(o, reaches.get(o.id)) for o in rows]})

    @api.post("/overrides/{override_id}/revoke")
    async def revoke(override_id: OverrideId, request: Request, who: str = Depends(require_admin)) -> Response:
        if not await asyncio.to_thread(revoke_override, store_engine(request), override_id, who):
            raise NotFound(f"no active override {override_id}")
        await apply_now(request.app.state)
        return _json({"object": "override", "id": override_id, "status": "revoked", "revoked_by": who})

    @api.get("/exchanges.jsonl")
    async def export(request: Request, engine: Engine = Depends(store_engine)) -> StreamingResponse:
        filters, limit = parse_filters(request), parse_limit(request, None)
        # A sync iterator: Starlette pulls it in a worker thread, so the export never blocks the event loop.
        return StreamingResponse(
            _export_lines(engine, filters, limit),
            media_type="application/x-ndjson",
            headers={"content-disposition": 'attachment; filename="exchanges.jsonl"'},
        )

    @api.get("/exchanges/{exchange_id}")
    async def get_exchange(exchange_id: str, engine: Engine = Depends(store_engine)) -> Response:
        return _json(await asyncio.to_thread(exchange_detail, engine, exchange_id))

    @api.post("/exchanges/{exchange_id}/review")
    async def review(
        exchange_id: str, request: Request, engine: Engine = Depends(store_engine), who: str = Depends(require_admin)
    ) -> Response:
        try:
            body = ReviewRequest.model_validate_json(await request.body() or b"{}")
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            if loc == "reviewer":
                raise InvalidRequest("'reviewer' comes from your admin key (GUARD_ADMIN_KEYS)", param=loc) from None
            raise InvalidRequest(f"invalid value for '{loc}': {err['msg']}", param=loc or None) from None
        outcome = await asyncio.to_thread(save_review, engine, exchange_id, body, who)
        await apply_now(request.app.state)
        return _json(
            {
                "object": "review",
                "id": outcome.review_id,
                "exchange_id": exchange_id,
                "label": body.label,
                "reviewer": who,
                "override_id": outcome.override_id,
                "disputed": outcome.disputed,
                "status": "recorded",
            }
        )

    router = APIRouter()
    router.include_router(api)
    router.include_router(review_page_routes())
    return router
