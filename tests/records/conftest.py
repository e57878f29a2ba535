from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from records_support import pg_reachable, pg_schema, pg_url
from sqlalchemy import Engine

from guard.store.db import make_engine, upgrade

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _pg_or_skip() -> None:
    if not pg_reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 (user postgres, db test)")


@pytest.fixture
def pg_schema_url() -> Iterator[tuple[str, str]]:
    """(schema, url) of an empty schema on the local Postgres, dropped after the test."""
    _pg_or_skip()
    with pg_schema() as schema:
        yield schema, pg_url(schema)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """An empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'guard.db'}"
        return
    _pg_or_skip()
    with pg_schema() as schema:
        yield pg_url(schema)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated database of each kind."""
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()
