"""Rate limits and usage metrics in one process (in-memory counters); the fleet case is tests/records/test_replicas."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from support.upstream import ECHO, SLOW

ROOT = Path(__file__).resolve().parents[2]


def keys(*tenants: str) -> dict[str, str]:
    return {f"sk-{uuid.uuid4().hex}": t for t in tenants}


def chat(p, key: str, model: str = ECHO, **extra) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(f"{p.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30)


def samples(p) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{p.url}/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def test_key_limit_answers_an_openai_shaped_429_with_retry_after(proxy) -> None:
    api = keys("acme", "acme")
    first, second = list(api)
    p = proxy(api_keys=api, limit_key_requests="3/minute")
    assert [chat(p, first).status_code for _ in range(3)] == [200] * 3
    refused = chat(p, first)
    assert refused.status_code == 429
    assert set(refused.json()) == {"error"}
    err = refused.json()["error"]
    assert err["type"] == "requests" and err["code"] == "rate_limit_exceeded"
    assert "requests limit 3 per 1 minute" in err["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert chat(p, second).status_code == 200  # the limit is per key: the tenant's other key still works


def test_tenant_limit_covers_all_of_its_keys(proxy) -> None:
    api = keys("acme", "acme", "globex")
    a1, a2, g = list(api)
    p = proxy(api_keys=api, limit_tenant_requests="4/minute")
    codes = [chat(p, k).status_code for k in (a1, a2, a1, a2, a1, a2)]
    assert codes == [200, 200, 200, 200, 429, 429]
    assert chat(p, g).status_code == 200
    assert "tenant 'acme'" in chat(p, a1).json()["error"]["message"]


def test_token_quota_refuses_once_the_usage_reported_upstream_is_spent(proxy) -> None:
    api = keys("acme")
    (key,) = api
    p = proxy(api_keys=api, limit_key_tokens="20/day")
    spent = 0
    while (r := chat(p, key)).status_code == 200:
        spent += r.json()["usage"]["total_tokens"]
        assert spent < 200, "the token quota never refused"
    assert spent >= 20 and r.status_code == 429 and r.json()["error"]["type"] == "tokens"


def test_errored_requests_are_timed_and_in_flight_returns_to_zero(proxy) -> None:
    api = keys("acme")
    (key,) = api
    # Well under the slow upstream's 3 s, well over an echo's answer on a loaded 2-core machine (0.5 s failed there).
    p = proxy(api_keys=api, upstream_read_timeout_s=1.5, upstream_retries=0)
    count = ("guard_request_duration_seconds_count", (("route", "chat_completions"),))
    before = samples(p).get(count, 0.0)
    assert chat(p, "sk-wrong").status_code == 401
    assert chat(p, key, model=SLOW).status_code == 504
    with ThreadPoolExecutor(4) as pool:
        assert all(r.status_code == 200 for r in pool.map(lambda _: chat(p, key), range(8)))
    after = samples(p)
    assert after[count] - before == 10  # the 401 and the 504 as well as the 8 answers
    assert after[("guard_requests_in_flight", ())] == 0


def test_tenant_label_is_bounded_to_the_first_configured_tenants(proxy) -> None:
    api = keys("big", "medium", "small")
    big, _, small = list(api)
    p = proxy(api_keys=api, metrics_tenants=2)
    chat(p, big)
    chat(p, small)
    s = samples(p)
    tenants = {dict(k[1])["tenant"] for k in s if k[0] == "guard_tenant_requests_total"}
    assert {"big", "other"} <= tenants and "small" not in tenants  # (other tests' tenants share the registry)


BUILD_INFO_WORKER = """
import sys
from guard import metrics
metrics.set_build_info("0.1.0", "m1", "rails-old")
metrics.set_build_info("0.1.0", "m1", "rails-new")  # a hot reload
"""


def test_one_live_build_info_after_a_reload_in_multiprocess_mode(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    for _ in range(2):  # two workers
        subprocess.run([sys.executable, "-c", BUILD_INFO_WORKER], env=env, check=True, timeout=60)
    out = subprocess.run(
        [sys.executable, "-c", "from guard import metrics; print(metrics.render()[0].decode())"],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    live = [
        s.labels["rails_hash"]
        for fam in text_string_to_metric_families(out)
        for s in fam.samples
        if s.name == "guard_build_info" and s.value == 1
    ]
    assert live == ["rails-new"]
