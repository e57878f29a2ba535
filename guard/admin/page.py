"""The review page: the queue, one exchange in full, label buttons and a correction box. Server-rendered."""

from __future__ import annotations

import asyncio
from typing import Annotated
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import Engine

from guard.admin import templates
from guard.admin.auth import COOKIE, SESSION_S, admin_keys, new_session, reviewer_for_key, signed_in
from guard.admin.deps import store_engine
from guard.admin.filters import Filters, parse_filters, parse_offset
from guard.admin.review import ReviewRequest, apply_now, save_review
from guard.errors import InvalidRequest, NotFound
from guard.store.overrides import active_overrides, revoke_override
from guard.store.query import count_matching, fetch_feedback, fetch_record, fetch_records, fetch_reviews

QUEUE_PAGE_SIZE = 50
OverrideId = Annotated[int, Path(ge=1, le=2**31 - 1)]  # a database integer id, not any number a client sends
_MAX_FORM = 64 * 1024


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > _MAX_FORM:
        raise InvalidRequest("form too large")
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}


def _to_login(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/admin/login?next={quote(request.url.path, safe='/')}", status_code=303)


def _safe_next(value: str | None) -> str:
    # Only local review pages: never redirect a signed-in admin to another site.
    return value if value and value.startswith("/admin/review") and "//" not in value else "/admin/review"


def _queue(engine: Engine, filters: Filters = Filters(), offset: int = 0) -> tuple[list, int]:
    """A page of the queue (flagged, never reviewed or disputed) and its true total."""
    criteria = {**filters.kwargs(), "flagged": True, "needs_review": True}
    page = fetch_records(engine, limit=QUEUE_PAGE_SIZE, offset=offset, **criteria)
    return page, count_matching(engine, **criteria)


def review_page_routes() -> APIRouter:
    router = APIRouter(prefix="/admin")

    @router.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request) -> Response:
        return HTMLResponse(templates.login_page(next_url=_safe_next(request.query_params.get("next"))))

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await _form(request)
        given = form.get("key", "")
        reviewer = reviewer_for_key(request, given) if given and admin_keys(request) else None
        if reviewer is None:
            return HTMLResponse(templates.login_page("Wrong admin key.", _safe_next(form.get("next"))), status_code=401)
        resp = RedirectResponse(_safe_next(form.get("next")), status_code=303)
        resp.set_cookie(
            COOKIE,
            new_session(given, reviewer),
            max_age=SESSION_S,
            path="/admin",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return resp

    @router.post("/logout")
    async def logout() -> Response:
        resp = RedirectResponse("/admin/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/admin")
        return resp

    @router.get("/review", response_class=HTMLResponse)
    async def queue(request: Request) -> Response:
        who = signed_in(request)
        if who is None:
            return _to_login(request)
        filters, offset = parse_filters(request), parse_offset(request)
        records, total = await asyncio.to_thread(_queue, store_engine(request), filters, offset)
        done = request.query_params.get("done")
        notice = f"Saved review of {done}." if done else None
        view = templates.QueueView(records, total, offset, QUEUE_PAGE_SIZE, request.query_params)
        return HTMLResponse(templates.queue_page(view, who, notice))

    @router.get("/review/{exchange_id}", response_class=HTMLResponse)
    async def exchange(exchange_id: str, request: Request) -> Response:
        who = signed_in(request)
        if who is None:
            return _to_login(request)
        engine = store_engine(request)
        rec = await asyncio.to_thread(fetch_record, engine, exchange_id)
        if rec is None:
            return HTMLResponse(templates.page("Not found", "<p>No such exchange.</p>"), status_code=404)
        reviews = await asyncio.to_thread(fetch_reviews, engine, exchange_id=exchange_id)
        feedback = await asyncio.to_thread(fetch_feedback, engine, exchange_id=exchange_id)
        return HTMLResponse(templates.exchange_page(rec, reviews, feedback, who))

    @router.post("/review/{exchange_id}")
    async def submit(exchange_id: str, request: Request) -> Response:
        who = signed_in(request)  # raises Forbidden for a cross-site post carrying the cookie
        if who is None:
            return _to_login(request)
        form = await _form(request)
        review = ReviewRequest(
            label=form.get("label", ""),
            unsafe_label=form.get("unsafe_label") or None,
            correction=form.get("correction", "").strip() or None,
        )
        await asyncio.to_thread(save_review, store_engine(request), exchange_id, review, who)
        await apply_now(request.app.state)
        remaining, _ = await asyncio.to_thread(_queue, store_engine(request))
        nxt = next((r for r in remaining if r.exchange_id != exchange_id), None)
        target = (
            f"/admin/review/{quote(nxt.exchange_id, safe='')}"
            if nxt is not None
            else f"/admin/review?done={quote(exchange_id, safe='')}"
        )
        return RedirectResponse(target, status_code=303)

    @router.get("/corrections", response_class=HTMLResponse)
    async def overrides_page(request: Request) -> Response:
        who = signed_in(request)
        if who is None:
            return _to_login(request)
        rows = await asyncio.to_thread(active_overrides, store_engine(request))
        return HTMLResponse(templates.overrides_page(rows, who, request.query_params.get("revoked")))

    @router.post("/corrections/{override_id}/revoke")
    async def revoke_from_page(override_id: OverrideId, request: Request) -> Response:
        who = signed_in(request)
        if who is None:
            return _to_login(request)
        if not await asyncio.to_thread(revoke_override, store_engine(request), override_id, who):
            raise NotFound(f"no active override {override_id}")
        await apply_now(request.app.state)
        return RedirectResponse(f"/admin/corrections?revoked={override_id}", status_code=303)

    return router
