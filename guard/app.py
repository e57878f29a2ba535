"""`create_app(settings)`: the FastAPI application, with domain errors mapped to OpenAI error bodies."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import Route

from guard import __version__, openapi, wire
from guard.admin.feedback import feedback_router
from guard.admin.routes import admin_router
from guard.edge import AuthThrottle, EdgeLimits
from guard.errors import GuardError, UpstreamHTTPError, public_message
from guard.more_routes import more_router
from guard.resources import open_resources
from guard.routes import chat_completions, router
from guard.settings import Settings
from guard.usage import RequestGauge

log = logging.getLogger("guard")

_HTTP_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
}


def error_response(status: int, message: str, type_: str, code: str | None, param: str | None = None) -> Response:
    body = wire.ErrorResponse(error=wire.ErrorBody(message=message, type=type_, param=param, code=code))
    return Response(body.model_dump_json(), status_code=status, media_type="application/json")


async def _guard_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GuardError)
    exchange_id = getattr(exc, "exchange_id", None)
    if isinstance(exc, UpstreamHTTPError):  # the upstream's own error, as it sent it
        response = Response(exc.body, status_code=exc.status, media_type="application/json", headers=exc.headers)
    else:
        response = error_response(exc.status, public_message(exc, exchange_id), exc.type, exc.code, exc.param)
    if exchange_id is not None:
        response.headers["x-guard-exchange-id"] = exchange_id
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        response.headers["retry-after"] = str(retry_after)
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), _HTTP_TYPES.get(exc.status_code, "server_error"), code=None)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if p != "body")
    return error_response(
        400, f"invalid value for '{loc}': {err['msg']}", "invalid_request_error", "invalid_request", loc or None
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal error; see the proxy's log", "server_error", "internal_error")


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(settings) as resources:
            app.state.resources = resources
            app.state.store_engine = resources.store_engine
            yield
            del app.state.resources

    app = FastAPI(title="guardtune", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    # The chat route on the app itself: FastAPI dispatches an included router's routes through several more
    # layers per request, and this route is the one whose overhead users compare (bench/proxy_overhead.py).
    # A plain Starlette route: FastAPI's request handler solves dependencies and wraps the endpoint on every
    # request (about 20 µs of CPU), and this route needs neither. /openapi.json describes it (openapi.install).
    app.router.routes.append(Route("/v1/chat/completions", chat_completions, methods=["POST"]))
    app.include_router(router)
    app.include_router(more_router)
    app.include_router(feedback_router())
    app.include_router(admin_router())
    app.add_exception_handler(GuardError, _guard_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(RequestGauge)  # in-flight gauge and the duration of every chat request, errors included
    openapi.install(app, [APIRoute("/v1/chat/completions", chat_completions, methods=["POST"])])
    app.add_middleware(
        EdgeLimits,  # type: ignore[arg-type]
        body_limits={"/v1/feedback": settings.feedback_max_body_bytes, "/admin": settings.admin_max_body_bytes},
        throttle=AuthThrottle(settings.auth_failure_limit, settings.auth_failure_window_s),
    )
    return app
