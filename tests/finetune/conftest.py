from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from ft_support import pg_reachable, pg_schema_url

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty exchange store of each kind."""
    from guard.store.db import upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'guard.db'}"
        upgrade(url)
        yield url
        return
    if not pg_reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 (user postgres, db test)")
    with pg_schema_url() as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama chat model folder (built once per session, read-only for tests)."""
    from tinylm import make_tiny_lm

    return make_tiny_lm(tmp_path_factory.mktemp("tiny") / "base")
