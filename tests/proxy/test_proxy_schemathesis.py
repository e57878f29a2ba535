"""Property-based requests from the served OpenAPI document (request-body schemas included): the proxy never
answers 5xx to whatever a client sends, for a bounded number of generated examples per operation."""

from __future__ import annotations

import shutil
import subprocess
import sys

import httpx
import pytest

ADMIN = "admin-secret"
KEYS = {ADMIN: "ops"}  # one key valid for the tenant routes and the admin API: one run covers both
EXAMPLES = 8  # per operation; raise it locally for a longer search


def test_served_openapi_document_describes_the_request_bodies(proxy) -> None:
    doc = httpx.get(f"{proxy().url}/openapi.json").json()
    for path in ("/v1/chat/completions", "/v1/feedback", "/admin/exchanges/{exchange_id}/review"):
        ref = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.rsplit("/", 1)[-1] in doc["components"]["schemas"]
    chat = doc["components"]["schemas"]["ChatCompletionRequest"]
    assert {"model", "messages"} <= set(chat["required"])


def test_generated_requests_never_get_a_5xx(proxy, tmp_path) -> None:
    pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install schemathesis)")
    exe = shutil.which("schemathesis") or shutil.which("st")
    cli = [exe] if exe else [sys.executable, "-m", "schemathesis.cli"]
    # The upstream is the behaving fake: a generated chat request gets its answer, or a 4xx from the proxy.
    p = proxy(api_keys=KEYS, admin_key=ADMIN, record_enabled=True, auth_failure_limit=10_000)
    run = subprocess.run(
        [
            *cli,
            "run",
            f"{p.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            "16",
            "--workers",
            "1",
            "-H",
            f"Authorization: Bearer {ADMIN}",
            "--exclude-path",
            "/metrics",
            # Answers 501 by design (issue 15: the Responses API has no rails yet), which this check counts as 5xx.
            "--exclude-path",
            "/v1/responses",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # its cache directory goes there
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
