"""Startup mistakes end in one clear line on stderr and a non-zero exit, before anything slow is loaded."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE = {
    "GUARD_UPSTREAM_URL": "http://127.0.0.1:9/v1",
    "GUARD_TRIAGE_ENABLED": "false",
    "GUARD_RAILS_ENABLED": "false",
    "GUARD_RECORD_ENABLED": "false",
}


def guard(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    path = os.pathsep.join([str(ROOT), clean.get("PYTHONPATH", "")])
    full = {**clean, "GUARD_HOME": str(tmp_path), "PYTHONPATH": path, **BASE, **env}
    return subprocess.run(
        [sys.executable, "-m", "guard.cli", *args], env=full, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )


def one_line(out: subprocess.CompletedProcess[str]) -> str:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"GUARD_API_KEYS": "not-json"}, "invalid setting GUARD_API_KEYS: not valid JSON"),
        ({"GUARD_PORT": "eighty"}, "invalid setting GUARD_PORT"),
        ({"GUARD_WORKERS": "0"}, "invalid setting GUARD_WORKERS"),
        ({"GUARD_UPSTREAM_URL": "api.example.com"}, "invalid setting GUARD_UPSTREAM_URL: must start with http://"),
        ({"GUARD_LIMIT_KEY_REQUESTS": "lots"}, "invalid setting GUARD_LIMIT_KEY_REQUESTS: 'lots' is not a rate limit"),
        ({"GUARD_REDIS_URL": "127.0.0.1:6379"}, "invalid setting GUARD_REDIS_URL: must start with redis://"),
        ({"GUARD_RECORD_SAMPLE_RATE": "2"}, "invalid setting GUARD_RECORD_SAMPLE_RATE"),
        ({"GUARD_API_KEYS_FILE": "missing.yaml"}, "invalid setting GUARD_API_KEYS_FILE: cannot read missing.yaml"),
        ({"GUARD_HOST": "0.0.0.0"}, "refusing to listen on 0.0.0.0 without API keys"),
        ({"GUARD_RAILS_ENABLED": "true", "GUARD_RAILS_DIR": "no-such-dir"}, "rails config"),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else None,
)
def test_bad_setting_is_one_line_and_exit_2(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    assert expected in one_line(guard(tmp_path, "serve", **env))


def test_port_in_use_is_reported_before_the_models_load(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        t0 = time.monotonic()
        # A triage model that does not exist: had the models loaded first, that would be the error.
        out = guard(
            tmp_path,
            "serve",
            "--port",
            str(port),
            GUARD_TRIAGE_ENABLED="true",
            GUARD_TRIAGE_MODEL=str(tmp_path / "no-model"),
        )
    line = one_line(out)
    assert line == f"error: port {port} on 127.0.0.1 is already in use (GUARD_PORT / --port)"
    assert time.monotonic() - t0 < 30


def test_unreachable_redis_names_host_and_port_without_the_password(tmp_path: Path) -> None:
    line = one_line(guard(tmp_path, "serve", GUARD_REDIS_URL="redis://:hunter2@127.0.0.1:1/0"))
    assert "cannot reach Redis at 127.0.0.1:1" in line and "hunter2" not in line


def test_db_upgrade_against_an_unreachable_database_names_host_and_port_masked(tmp_path: Path) -> None:
    out = guard(tmp_path, "db", "upgrade", GUARD_DB_URL="postgresql+psycopg://guard:hunter2@127.0.0.1:1/guard")
    line = one_line(out)
    assert "cannot reach the database at 127.0.0.1:1" in line
    assert "hunter2" not in line and "guard:***@127.0.0.1:1" in line
