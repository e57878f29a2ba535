"""A small real app around the admin and feedback routers, served by uvicorn on 127.0.0.1 in a thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response

from guard import metrics
from guard.admin.feedback import feedback_router
from guard.admin.routes import admin_router
from guard.app import error_response
from guard.auth import Authenticator
from guard.errors import GuardError
from guard.settings import Settings

TENANT_KEYS = {"key-acme": "acme", "key-globex": "globex"}
ADMIN_KEY = "admin-secret-key"


def build_app(settings: Settings, engine: Any, writer: Any = None) -> FastAPI:
    app = FastAPI()
    app.state.settings = settings
    app.state.store_engine = engine
    app.state.resources = SimpleNamespace(auth=Authenticator(dict(settings.api_keys), settings.admin_key))
    if writer is not None:
        app.state.recorder = writer
    app.include_router(admin_router())
    app.include_router(feedback_router())

    async def on_guard_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GuardError)
        return error_response(exc.status, exc.message, exc.type, exc.code, exc.param)

    app.add_exception_handler(GuardError, on_guard_error)

    @app.get("/metrics")
    async def prom() -> Response:
        body, ctype = metrics.render()
        return Response(body, media_type=ctype)

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(app: FastAPI, lifespan: str = "off") -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        server.should_exit = True
        thread.join(10)
        raise RuntimeError("uvicorn did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
