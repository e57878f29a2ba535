"""App factory for the multiprocess metrics test: `uvicorn mp_app:create --factory --workers 2`.

Each worker records exchanges through its own RecordWriter into one shared database; `/metrics` must show
the sum over workers (prometheus_client multiprocess mode, PROMETHEUS_MULTIPROC_DIR set by the test).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app_support import build_app
from fastapi import FastAPI, Request, Response
from records_support import make_exchange

from guard.settings import load_settings
from guard.store.service import open_store


def create() -> FastAPI:
    settings = load_settings(db_url=os.environ["MP_TEST_DB_URL"], record_sample_rate=0.0)
    app = build_app(settings, engine=None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_store(settings) as store:
            app.state.store_engine, app.state.recorder = store.engine, store.writer
            yield

    app.router.lifespan_context = lifespan

    # Both handlers hold their worker's event loop for a moment on purpose: while one worker is busy the
    # kernel hands concurrent connections to the other, so the test reaches both workers deterministically.
    @app.get("/pid")
    async def pid() -> Response:
        time.sleep(0.02)
        return Response(str(os.getpid()))

    @app.post("/record")
    async def record(request: Request) -> Response:
        time.sleep(0.005)
        flag = request.query_params.get("flag")
        ex = make_exchange(0, flags={flag} if flag else set())
        request.app.state.recorder.record(ex)
        return Response(str(os.getpid()))

    return app
