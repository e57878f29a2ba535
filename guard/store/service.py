"""Open the store for the app's lifespan: engine, migrations, the record writer; closed (queue drained) on exit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import Engine

from guard.recent import Recent
from guard.settings import Settings
from guard.store.db import make_engine, upgrade
from guard.store.writer import RecordWriter


@dataclass(frozen=True, slots=True)
class Store:
    engine: Engine
    writer: RecordWriter


@asynccontextmanager
async def open_store(settings: Settings, mask: Callable[[str], str] | None = None,
                     migrate: bool = True, recent: Recent | None = None) -> AsyncIterator[Store]:
    """`mask` is applied to stored texts when `settings.pii_masking` is on; `recent` keeps served exchanges
    for feedback (default: in this process)."""
    engine = make_engine(settings.database_url)
    try:
        if migrate:
            await asyncio.to_thread(upgrade, engine)
        writer = RecordWriter.from_settings(settings, engine, mask=mask, recent=recent)
        await writer.start()
        try:
            yield Store(engine, writer)
        finally:
            await writer.aclose()
    finally:
        engine.dispose()
