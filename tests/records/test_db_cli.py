"""`guard db upgrade | prune | export` on a real SQLite file."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from records_support import make_record

from guard.store.cli import parse_duration
from guard.store.db import head_revision, insert_records, make_engine
from guard.store.query import count_records


def _guard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guard.cli", "db", *args], capture_output=True, text=True, timeout=60)


def test_upgrade_prune_and_export_from_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x' / 'guard.db'}"
    up = _guard("upgrade", "--url", url)
    assert up.returncode == 0 and f"revision {head_revision()}" in up.stdout, up.stderr
    now = datetime.now(UTC)
    engine = make_engine(url)
    insert_records(
        engine,
        [
            make_record(1, flags=("blocked_input",), created_at=now - timedelta(days=45)),
            make_record(2, flags=("blocked_input",), created_at=now - timedelta(days=2)),
            make_record(3, created_at=now - timedelta(days=1)),
        ],
    )
    exported = _guard("export", "--flag", "blocked_input", "--url", url)
    assert exported.returncode == 0, exported.stderr
    assert len([json.loads(line) for line in exported.stdout.splitlines()]) == 2
    pruned = _guard("prune", "--older-than", "30d", "--url", url)
    assert pruned.returncode == 0 and "deleted 1 " in pruned.stdout, pruned.stderr
    assert count_records(engine) == 2
    engine.dispose()


def test_bad_duration_is_one_clear_line_without_a_traceback(tmp_path: Path) -> None:
    bad = _guard("prune", "--older-than", "soon", "--url", f"sqlite:///{tmp_path / 'g.db'}")
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: bad duration 'soon'") and "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("2w", timedelta(weeks=2)),
        ("90 m", timedelta(minutes=90)),
    ],
)
def test_durations_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
