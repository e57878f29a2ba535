"""Through the real app (`guard.app.create_app`): a tenant's chat exchange is recorded, rated by that tenant
only, visible to the admin API and counted in /metrics."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from app_support import ADMIN_KEY, TENANT_KEYS, serve
from fastapi import FastAPI

from guard.app import create_app
from guard.settings import load_settings

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
ACME = {"authorization": "Bearer key-acme"}
GLOBEX = {"authorization": "Bearer key-globex"}


def fake_upstream() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat() -> dict:
        return {
            "id": "up-1",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "Restart it."}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }

    return app


def test_exchange_is_recorded_rated_by_its_tenant_only_and_visible_to_the_admin(tmp_path: Path) -> None:
    with serve(fake_upstream()) as upstream:
        settings = load_settings(
            home=tmp_path,
            upstream_url=f"{upstream}/v1",
            api_keys=TENANT_KEYS,
            admin_key=ADMIN_KEY,
            triage_enabled=False,
            rails_enabled=False,
            record_sample_rate=1.0,
        )
        with serve(create_app(settings), lifespan="on") as base:
            chat = httpx.post(
                f"{base}/v1/chat/completions",
                headers=ACME,
                timeout=30,
                json={"model": "m", "messages": [{"role": "user", "content": "my wifi drops"}]},
            )
            assert chat.status_code == 200, chat.text
            ex_id = chat.headers["x-guard-exchange-id"]

            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                found = httpx.get(f"{base}/admin/exchanges", params={"tenant": "acme"}, headers=ADMIN).json()
                if found["data"]:
                    break
                time.sleep(0.05)
            assert [r["exchange_id"] for r in found["data"]] == [ex_id]
            rec = found["data"][0]
            assert rec["messages"][0]["content"] == "my wifi drops" and rec["response"] == "Restart it."

            assert httpx.get(f"{base}/admin/exchanges", headers=ACME).status_code == 401
            assert (
                httpx.post(f"{base}/v1/feedback", headers=GLOBEX, json={"exchange_id": ex_id, "rating": -1}).status_code
                == 404
            )
            assert (
                httpx.post(
                    f"{base}/v1/feedback",
                    headers=ACME,
                    json={"exchange_id": ex_id, "rating": -1, "comment": "did not help"},
                ).status_code
                == 200
            )
            detail = httpx.get(f"{base}/admin/exchanges/{ex_id}", headers=ADMIN).json()
            assert "negative_feedback" in detail["record"]["flags"]
            assert [(f["tenant"], f["rating"]) for f in detail["feedback"]] == [("acme", -1)]
            queue = httpx.get(f"{base}/admin/queue", headers=ADMIN).json()["data"]
            assert [r["exchange_id"] for r in queue] == [ex_id]  # negative feedback puts it up for review

            scrape = httpx.get(f"{base}/metrics").text
            assert 'guard_exchanges_logged_total{flag="clean"}' in scrape
