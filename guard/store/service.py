"""Open the store for the app's lifespan: engine, migrations, the record writer; closed (queue drained) on exit.

A database that is down or hangs at startup does not stop the proxy: it serves, records go to the spool, and
the writer runs the migrations and replays the spool once the database answers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import Engine

from guard.recent import Recent
from guard.settings import Settings
from guard.store.db import make_engine, upgrade
from guard.store.writer import RecordWriter

log = logging.getLogger("guard.store")


@dataclass(frozen=True, slots=True)
class Store:
    engine: Engine
    writer: RecordWriter


def store_engine(settings: Settings) -> Engine:
    return make_engine(
        settings.database_url,
        busy_timeout_s=settings.db_lock_timeout_s,
        connect_timeout_s=settings.db_connect_timeout_s,
        statement_timeout_s=settings.db_statement_timeout_s,
        lock_timeout_s=settings.db_lock_timeout_s,
    )


@asynccontextmanager
async def open_store(
    settings: Settings, mask: Callable[[str], str] | None = None, migrate: bool = True, recent: Recent | None = None
) -> AsyncIterator[Store]:
    """`mask` is applied to stored texts when `settings.pii_masking` is on; `recent` keeps served exchanges
    for feedback (default: in this process)."""
    engine = store_engine(settings)
    # The writer has its own pool: breaking its connections on a deadline never cuts an admin query.
    writer_engine = store_engine(settings)
    try:
        writer = RecordWriter.from_settings(
            settings,
            writer_engine,
            mask=mask,
            recent=recent,
            prepare=functools.partial(upgrade, writer_engine) if migrate else None,
        )
        unavailable = await asyncio.to_thread(writer.prepare_now)
        if unavailable is not None:
            log.warning(
                "record store: database unavailable at startup (%s); serving anyway, records go to the "
                "spool in %s and are stored once it answers",
                unavailable,
                settings.spool_dir,
            )
        await writer.start()
        try:
            yield Store(engine, writer)
        finally:
            await writer.aclose()
    finally:
        writer_engine.dispose()
        engine.dispose()
