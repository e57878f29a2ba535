"""Operational surface: health, readiness, metrics, the CLI's version and its one-line setting errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from support.upstream import ECHO

from guard import __version__

GUARD = [sys.executable, "-c", "from guard.cli import main; main()"]


def test_healthz_and_readyz_answer(proxy) -> None:
    p = proxy()
    assert httpx.get(f"{p.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{p.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["backend"] == "upstream"


def test_metrics_count_requests_by_outcome(proxy) -> None:
    p = proxy()
    body = {"model": ECHO, "messages": [{"role": "user", "content": "count me"}]}
    assert httpx.post(f"{p.url}/v1/chat/completions", json=body).status_code == 200
    metrics = httpx.get(f"{p.url}/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    line = next(
        x
        for x in metrics.text.splitlines()
        if x.startswith('guard_requests_total{outcome="ok",route="chat_completions"}')
    )
    assert float(line.split()[-1]) >= 1
    assert "guard_request_duration_seconds_bucket" in metrics.text
    assert "guard_build_info" in metrics.text


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    return subprocess.run(
        [*GUARD, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env},
        cwd=Path(__file__).resolve().parents[2],
    )


def test_cli_prints_version() -> None:
    out = run_cli("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"guardtune {__version__}"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"GUARD_PORT": "abc"}, "GUARD_PORT"),
        ({"GUARD_UPSTREAM_URL": "ftp://x"}, "GUARD_UPSTREAM_URL"),
        ({"GUARD_HOST": "0.0.0.0", "GUARD_UPSTREAM_URL": "http://127.0.0.1:9/v1"}, "GUARD_API_KEYS"),
        ({"GUARD_UPSTREAM_URL": "http://127.0.0.1:9/v1"}, "guard triage build"),  # no triage model in this home
    ],
)
def test_bad_setting_stops_serve_with_one_clear_line(env: dict[str, str], named: str, tmp_path) -> None:
    out = run_cli("serve", GUARD_HOME=str(tmp_path), **env)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ") and named in lines[0]
    assert lines[0].count("(run ") <= 1  # one hint, not repeated
    assert "Traceback" not in out.stderr + out.stdout


def test_serve_without_local_model_or_upstream_says_how_to_fix(tmp_path) -> None:
    out = run_cli("serve", GUARD_HOME=str(tmp_path))
    assert out.returncode == 2
    assert "guard models prepare" in out.stderr and "Traceback" not in out.stderr
