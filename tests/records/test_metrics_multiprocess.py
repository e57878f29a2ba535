"""Metrics scraped from /metrics with two uvicorn workers (prometheus_client multiprocess mode)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from app_support import free_port
from prometheus_client.parser import text_string_to_metric_families

from guard.store.db import make_engine, upgrade
from guard.store.query import fetch_records

HERE = Path(__file__).resolve().parent


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_sum_the_records_of_every_worker(tmp_path: Path) -> None:
    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(prom_dir),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "MP_TEST_DB_URL": f"sqlite:///{tmp_path / 'guard.db'}",
        "GUARD_HOME": str(tmp_path / "home"),
    }
    # Migrate first, as `make run` does (`guard db upgrade` before `guard serve`): two workers racing to migrate
    # one SQLite file is not what this test measures.
    setup = make_engine(env["MP_TEST_DB_URL"])
    upgrade(setup)
    setup.dispose()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "mp_app:create",
            "--factory",
            "--workers",
            "2",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--timeout-worker-healthcheck",
            "60",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # Both workers up and serving before the measured load (a loaded machine starts them slowly).
        ready: set[str] = set()
        deadline = time.monotonic() + 60

        def whoami(_: int) -> str | None:
            try:
                return httpx.get(f"{base}/pid", headers={"connection": "close"}, timeout=5).text
            except httpx.TransportError:
                time.sleep(0.1)
                return None

        with ThreadPoolExecutor(4) as pool:
            while len(ready) < 2:
                assert proc.poll() is None and time.monotonic() < deadline, f"workers serving: {ready}"
                ready.update(pid for pid in pool.map(whoami, range(8)) if pid)
        pids: dict[str, int] = {}
        flagged = errors = sent = 0

        def post(flag: str) -> tuple[str, str | None]:
            try:  # a fresh connection per request so both workers get some
                return flag, httpx.post(
                    f"{base}/record",
                    params={"flag": flag} if flag else None,
                    headers={"connection": "close"},
                    timeout=10,
                ).text
            except httpx.TransportError:  # a busy machine can make uvicorn recycle a worker
                return flag, None

        with ThreadPoolExecutor(4) as pool:
            while sent < 400 and (len(pids) < 2 or sent < 60):
                for flag, pid in pool.map(post, ["blocked_input", "blocked_input", ""] * 4):
                    sent += 1
                    if pid is None:
                        errors += 1
                        continue
                    pids[pid] = pids.get(pid, 0) + 1
                    flagged += bool(flag)
        assert len(pids) == 2, f"one worker took every request: {pids}"

        key = ("guard_exchanges_logged_total", (("flag", "blocked_input"),))
        engine = make_engine(env["MP_TEST_DB_URL"])
        deadline = time.monotonic() + 20
        while True:
            stored = len(fetch_records(engine, flags={"blocked_input"}))
            try:
                got = _samples(httpx.get(f"{base}/metrics").text)
            except httpx.TransportError:
                got = {}
            if (got.get(key) == stored == flagged) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        engine.dispose()
        # One scrape, answered by one worker, counts what both workers wrote.
        assert got.get(key) == stored
        assert stored == flagged or errors, (stored, flagged)
        assert ("guard_exchanges_logged_total", (("flag", "clean"),)) not in got  # sample rate 0: none stored
        assert got.get(("guard_record_queue_depth", ())) == 0
        assert got.get(("guard_record_spool_bytes", ())) == 0
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
