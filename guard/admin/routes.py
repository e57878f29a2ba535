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
from guard.admin.filters import Filters, parse_filters, parse_limit
from guard.admin.page import review_page_routes
from guard.admin.review import ReviewRequest, save_review
from guard.errors import InvalidRequest, NotFound
from guard.store.query import fetch_feedback, fetch_record, fetch_records, fetch_reviews, iter_records

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


def admin_router() -> APIRouter:
    """`/admin/...`: the JSON API (Bearer admin key or the page's session cookie) and the review page."""
    api = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])

    @api.get("/exchanges")
    async def list_exchanges(request: Request, engine: Engine = Depends(store_engine)) -> Response:
        filters, limit = parse_filters(request), parse_limit(request, 100)
        recs = await asyncio.to_thread(fetch_records, engine, limit=limit, **filters.kwargs())
        return _json({"object": "list", "data": [r.model_dump(mode="json") for r in recs]})

    @api.get("/queue")
    async def review_queue(request: Request, engine: Engine = Depends(store_engine)) -> Response:
        """Flagged exchanges nobody has reviewed yet, oldest first."""
        filters, limit = parse_filters(request), parse_limit(request, 100)
        kw = {**filters.kwargs(), "flagged": True, "reviewed": False}
        recs = await asyncio.to_thread(fetch_records, engine, limit=limit, **kw)
        return _json({"object": "list", "data": [r.model_dump(mode="json") for r in recs]})

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
    async def review(exchange_id: str, request: Request, engine: Engine = Depends(store_engine)) -> Response:
        try:
            body = ReviewRequest.model_validate_json(await request.body() or b"{}")
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise InvalidRequest(f"invalid value for '{loc}': {err['msg']}", param=loc or None) from None
        await asyncio.to_thread(save_review, engine, exchange_id, body)
        return _json({"object": "review", "exchange_id": exchange_id, "label": body.label, "status": "recorded"})

    router = APIRouter()
    router.include_router(api)
    router.include_router(review_page_routes())
    return router
