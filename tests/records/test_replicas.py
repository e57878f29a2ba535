"""Two proxy processes on one Postgres and one Redis (both on 127.0.0.1), as two replicas of a Deployment.

Each replica is a real `guard serve` process against the test upstream; nothing is shared between them but
the database and Redis.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from guard.store.db import make_engine, upgrade
from guard.store.query import fetch_record

REDIS = ("127.0.0.1", 6379)
REDIS_URL = "redis://127.0.0.1:6379/5"
ROOT = Path(__file__).resolve().parents[2]


def redis_reachable() -> bool:
    try:
        with socket.create_connection(REDIS, timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Replica:
    proc: subprocess.Popen[str]
    url: str
    log: Path

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        }


@dataclass
class Fleet:
    a: Replica
    b: Replica
    key: str
    tenant: str
    db_url: str


@pytest.fixture
def fleet_factory(pg_schema_url, upstream, tmp_path: Path) -> Iterator:
    if not redis_reachable():
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    _, db_url = pg_schema_url
    engine = make_engine(db_url)
    upgrade(engine)  # as the chart's migration hook does, once, before the replicas start
    engine.dispose()
    started: list[Replica] = []

    def start(**env: str) -> Fleet:
        tenant = f"t-{uuid.uuid4().hex[:8]}"  # fresh limit counters and recent keys in the shared Redis
        key = f"sk-{uuid.uuid4().hex}"
        base = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "GUARD_UPSTREAM_URL": upstream.v1,
            "GUARD_DB_URL": db_url,
            "GUARD_REDIS_URL": REDIS_URL,
            "GUARD_API_KEYS": f'{{"{key}": "{tenant}"}}',
            "GUARD_TRIAGE_ENABLED": "false",
            "GUARD_RAILS_ENABLED": "false",
            "GUARD_RECORD_SAMPLE_RATE": "0",
            "GUARD_LOG_LEVEL": "warning",
            "OMP_NUM_THREADS": "1",
            **env,
        }
        replicas = []
        for name in ("a", "b"):
            port = free_port()
            log = tmp_path / f"{name}.log"
            proc = subprocess.Popen(
                [sys.executable, "-m", "guard.cli", "serve", "--port", str(port)],
                env={**base, "GUARD_HOME": str(tmp_path / name)},
                cwd=tmp_path,
                stdout=log.open("w"),
                stderr=subprocess.STDOUT,
                text=True,
            )
            replica = Replica(proc, f"http://127.0.0.1:{port}", log)
            started.append(replica)
            replicas.append(replica)
        for r in replicas:
            _wait_ready(r)
        return Fleet(replicas[0], replicas[1], key, tenant, db_url)

    yield start
    for r in started:
        r.proc.terminate()
    for r in started:
        try:
            r.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            r.proc.kill()


def _wait_ready(r: Replica, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert r.proc.poll() is None, f"replica exited: {r.log.read_text()}"
        try:
            if httpx.get(f"{r.url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"replica not ready: {r.log.read_text()}")


def chat(url: str, key: str, text: str = "hello there", **extra) -> httpx.Response:
    body = {"model": "gpt-fake", "messages": [{"role": "user", "content": text}], **extra}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30)


def feedback(url: str, key: str, exchange_id: str, rating: int = -1) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/feedback",
        json={"exchange_id": exchange_id, "rating": rating},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )


def test_feedback_on_a_clean_exchange_served_by_one_replica_is_accepted_by_the_other(fleet_factory) -> None:
    fleet = fleet_factory()
    ids = []
    for i in range(10):
        r = chat(fleet.a.url, fleet.key, f"a clean question number {i}")
        assert r.status_code == 200
        ids.append(r.headers["x-guard-exchange-id"])
    answers = [feedback(fleet.b.url, fleet.key, xid) for xid in ids]
    assert [a.status_code for a in answers] == [200] * 10, answers[0].text
    engine = make_engine(fleet.db_url)
    try:
        deadline = time.monotonic() + 20
        while (stored := [fetch_record(engine, xid) for xid in ids]).count(None) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(rec is not None and "negative_feedback" in rec.flags for rec in stored)
        assert stored[3].messages[0].content == "a clean question number 3"  # the exchange itself, from A
    finally:
        engine.dispose()


def test_feedback_on_an_exchange_nobody_kept_is_a_404_naming_why(fleet_factory) -> None:
    fleet = fleet_factory(GUARD_RECENT_TTL_S="1")
    xid = chat(fleet.a.url, fleet.key).headers["x-guard-exchange-id"]
    time.sleep(2.5)  # past the TTL: the clean exchange is gone from Redis
    r = feedback(fleet.b.url, fleet.key, xid)
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["param"] == "exchange_id" and "not stored" in err["message"] and "kept 1 s" in err["message"]
    other = f"sk-{uuid.uuid4().hex}"
    assert feedback(fleet.b.url, other, xid).status_code == 401


def test_a_rate_limit_shared_by_two_replicas_holds_within_5_percent(fleet_factory) -> None:
    limit = 60
    # an hour, not a minute: on a loaded machine the 150 requests can take longer than a minute, and a sliding
    # window then rightly admits more
    fleet = fleet_factory(GUARD_LIMIT_KEY_REQUESTS=f"{limit}/hour")
    urls = [fleet.a.url, fleet.b.url] * 75  # 150 requests, alternating replicas, 8 at a time

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda u: chat(u, fleet.key), urls))
    ok = sum(r.status_code == 200 for r in codes)
    limited = [r for r in codes if r.status_code == 429]
    assert abs(ok - limit) <= 0.05 * limit, f"{ok} requests served against a limit of {limit}"
    assert ok + len(limited) == len(urls)
    err = limited[0].json()["error"]
    assert err["code"] == "rate_limit_exceeded" and err["type"] == "requests"
    assert 1 <= int(limited[0].headers["retry-after"]) <= 3600
    # Both replicas refused some: the budget is one, not one each.
    served_by = {
        u: sum(1 for url, r in zip(urls, codes, strict=True) if url == u and r.status_code == 200)
        for u in (fleet.a.url, fleet.b.url)
    }
    assert all(0 < n < limit for n in served_by.values()), served_by


def test_token_counters_match_the_upstreams_usage_and_token_limits_refuse(fleet_factory) -> None:
    fleet = fleet_factory(GUARD_LIMIT_TENANT_TOKENS="300/hour")
    before = {r.url: r.metrics() for r in (fleet.a, fleet.b)}
    usages = []
    for i in range(20):
        r = chat(fleet.a.url if i % 2 else fleet.b.url, fleet.key, "count my tokens " * (i + 1))
        if r.status_code == 429:
            break
        usages.append(r.json()["usage"])
    assert usages and len(usages) < 20, "the token limit never refused"
    assert sum(u["total_tokens"] for u in usages) >= 300  # served until the window was used up, not before
    # The other replica learns that the window is spent from its own next charge: at most one more request.
    for replica in (fleet.a, fleet.b):
        for _ in range(2):
            r = chat(replica.url, fleet.key)
            if r.status_code == 429:
                break
            usages.append(r.json()["usage"])
        assert r.status_code == 429 and r.json()["error"]["type"] == "tokens"
    time.sleep(0.5)  # the last charges are sent in the background

    def delta(name: str, labels: tuple[tuple[str, str], ...]) -> float:
        return sum(
            r.metrics().get((name, labels), 0.0) - before[r.url].get((name, labels), 0.0) for r in (fleet.a, fleet.b)
        )

    assert delta("guard_tokens_total", (("direction", "prompt"),)) == sum(u["prompt_tokens"] for u in usages)
    assert delta("guard_tokens_total", (("direction", "completion"),)) == sum(u["completion_tokens"] for u in usages)
    ok = delta("guard_tenant_requests_total", (("outcome", "ok"), ("tenant", fleet.tenant)))
    limited = delta("guard_tenant_requests_total", (("outcome", "rate_limited"), ("tenant", fleet.tenant)))
    assert ok == len(usages) and limited >= 1
