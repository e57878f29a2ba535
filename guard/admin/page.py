"""The review page: the queue, one exchange in full, label buttons and a correction box. Server-rendered."""

from __future__ import annotations

import asyncio
import hmac
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import Engine

from guard.admin import templates
from guard.admin.auth import COOKIE, SESSION_S, admin_key, is_admin, new_session
from guard.admin.deps import store_engine
from guard.admin.review import ReviewRequest, save_review
from guard.errors import InvalidRequest
from guard.store.query import fetch_feedback, fetch_record, fetch_records, fetch_reviews
from guard.store.schema import REVIEW_LABELS

QUEUE_PAGE_SIZE = 200
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


def _queue(engine: Engine) -> list:
    return fetch_records(engine, flagged=True, reviewed=False, limit=QUEUE_PAGE_SIZE)


def review_page_routes() -> APIRouter:
    router = APIRouter(prefix="/admin")

    @router.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request) -> Response:
        return HTMLResponse(templates.login_page(next_url=_safe_next(request.query_params.get("next"))))

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await _form(request)
        key = admin_key(request)
        given = form.get("key", "")
        if not key or not hmac.compare_digest(given.encode(), key.encode()):
            return HTMLResponse(templates.login_page("Wrong admin key.", _safe_next(form.get("next"))), status_code=401)
        resp = RedirectResponse(_safe_next(form.get("next")), status_code=303)
        resp.set_cookie(
            COOKIE,
            new_session(key),
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
        if not is_admin(request):
            return _to_login(request)
        records = await asyncio.to_thread(_queue, store_engine(request))
        done = request.query_params.get("done")
        notice = f"Saved review of {done}." if done else None
        return HTMLResponse(templates.queue_page(records, notice))

    @router.get("/review/{exchange_id}", response_class=HTMLResponse)
    async def exchange(exchange_id: str, request: Request) -> Response:
        if not is_admin(request):
            return _to_login(request)
        engine = store_engine(request)
        rec = await asyncio.to_thread(fetch_record, engine, exchange_id)
        if rec is None:
            return HTMLResponse(templates.page("Not found", "<p>No such exchange.</p>"), status_code=404)
        reviews = await asyncio.to_thread(fetch_reviews, engine, exchange_id=exchange_id)
        feedback = await asyncio.to_thread(fetch_feedback, engine, exchange_id=exchange_id)
        return HTMLResponse(templates.exchange_page(rec, reviews, feedback))

    @router.post("/review/{exchange_id}")
    async def submit(exchange_id: str, request: Request) -> Response:
        if not is_admin(request):  # raises Forbidden for a cross-site post carrying the cookie
            return _to_login(request)
        form = await _form(request)
        label = form.get("label", "")
        if label not in REVIEW_LABELS:
            raise InvalidRequest(f"'label' must be one of {', '.join(REVIEW_LABELS)}", param="label")
        review = ReviewRequest(
            label=label,
            correction=form.get("correction", "").strip() or None,
            reviewer=form.get("reviewer", "").strip()[:128] or None,
        )
        await asyncio.to_thread(save_review, store_engine(request), exchange_id, review)
        remaining = await asyncio.to_thread(_queue, store_engine(request))
        target = (
            f"/admin/review/{quote(remaining[0].exchange_id, safe='')}"
            if remaining
            else f"/admin/review?done={quote(exchange_id, safe='')}"
        )
        return RedirectResponse(target, status_code=303)

    return router
