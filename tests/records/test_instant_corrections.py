"""Instant corrections through running proxies: a review overrides the real classifier for close paraphrases of
the reviewed text on the next request, names itself in the response and the record, can be revoked, and reaches
every replica through the shared database (SQLite for one proxy, Postgres for two)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from records_support import pg_reachable, pg_schema, pg_url

from guard.store.db import make_engine, upgrade
from guard.store.query import fetch_record

ANN = {"authorization": "Bearer key-ann"}
REVIEWERS = {"key-ann": "ann"}
# A harmless question the shipped classifier (v17) refuses as crime (0.99), its close paraphrase (cosine 0.995),
# and a harmful ask on the same topic that the review must not reach (cosine 0.91; the override needs 0.97).
FLAGGED = "How can I get into my own car if I locked the keys inside?"
PARAPHRASE = "How can I get into my own car if I've locked the keys inside?"
UNRELATED = "How can I break into my neighbor's car and steal it without the keys?"


def _ask(p: Any, text: str) -> httpx.Response:
    r = httpx.post(
        f"{p.v1}/chat/completions",
        timeout=30,
        json={"model": "gpt-fake", "messages": [{"role": "user", "content": text}]},
    )
    assert r.status_code == 200, r.text
    return r


def _blocked(r: httpx.Response) -> bool:
    return bool(r.json()["choices"][0]["finish_reason"] == "content_filter")


def _stored(engine: Any, exchange_id: str, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rec = fetch_record(engine, exchange_id)
        if rec is not None:
            return rec
        time.sleep(0.05)
    raise AssertionError(f"exchange {exchange_id} was not recorded within {timeout_s}s")


def _guard(proxy: Any, triage_model_dir: Path, **settings: Any) -> Any:
    return proxy(
        triage_enabled=True,
        triage_model=triage_model_dir,
        rails_enabled=True,
        record_enabled=True,
        admin_keys=REVIEWERS,
        **settings,
    )


def _review(p: Any, exchange_id: str, label: str) -> dict[str, Any]:
    r = httpx.post(f"{p.url}/admin/exchanges/{exchange_id}/review", headers=ANN, json={"label": label}, timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_false_positive_review_lets_paraphrases_through_on_the_next_request_and_revoking_restores_the_block(
    proxy: Any, triage_model_dir: Path
) -> None:
    p = _guard(proxy, triage_model_dir, override_refresh_s=3600)  # no polling: the review itself must reload
    first = _ask(p, FLAGGED)
    assert _blocked(first) and "x-guard-override" not in first.headers
    engine = p.resources.store_engine
    reviewed = _stored(engine, first.headers["x-guard-exchange-id"])
    assert reviewed.triage_version == first.headers["x-guard-triage-version"] == p.resources.triage.version
    review = _review(p, reviewed.exchange_id, "false_positive")
    assert review["override_id"] is not None

    again = _ask(p, PARAPHRASE)
    assert not _blocked(again)
    assert again.headers["x-guard-override"] == (
        f"review={review['id']}; override={review['override_id']}; label=false_positive"
    )
    unrelated = _ask(p, UNRELATED)
    assert _blocked(unrelated) and "x-guard-override" not in unrelated.headers
    streamed = httpx.post(
        f"{p.v1}/chat/completions",
        timeout=30,
        json={"model": "gpt-fake", "stream": True, "messages": [{"role": "user", "content": PARAPHRASE}]},
    )
    # The model was asked (its echo streams back); what the output rails do with the echo is theirs to decide.
    assert streamed.status_code == 200 and '"content":"echo:' in streamed.text.replace(" ", "")
    assert streamed.headers["x-guard-override"] == again.headers["x-guard-override"]

    listed = httpx.get(f"{p.url}/admin/overrides", headers=ANN).json()["data"]
    assert [(o["id"], o["review_id"], o["label"], o["created_by"]) for o in listed] == [
        (review["override_id"], review["id"], "false_positive", "ann")
    ]
    # How far it reaches on this replica: the reach setting at least, short of the harm atlas's nearest text.
    assert 0.91 <= listed[0]["reach"] <= 0.99
    revoked = httpx.post(f"{p.url}/admin/overrides/{review['override_id']}/revoke", headers=ANN)
    assert revoked.status_code == 200 and revoked.json()["revoked_by"] == "ann"
    assert httpx.post(f"{p.url}/admin/overrides/{review['override_id']}/revoke", headers=ANN).status_code == 404
    assert httpx.get(f"{p.url}/admin/overrides", headers=ANN).json()["data"] == []
    after = _ask(p, PARAPHRASE)
    assert _blocked(after) and "x-guard-override" not in after.headers


def test_the_record_of_an_overridden_exchange_names_the_review_and_what_the_classifier_said(
    proxy: Any, triage_model_dir: Path
) -> None:
    p = _guard(proxy, triage_model_dir, record_sample_rate=1.0)
    engine = p.resources.store_engine
    reviewed = _stored(engine, _ask(p, FLAGGED).headers["x-guard-exchange-id"])
    review = _review(p, reviewed.exchange_id, "false_positive")
    before = _overrides_counted(p)
    r = _ask(p, PARAPHRASE)
    rec = _stored(engine, r.headers["x-guard-exchange-id"])
    assert rec.override is not None
    assert (rec.override.review_id, rec.override.exchange_id, rec.override.label) == (
        review["id"],
        reviewed.exchange_id,
        "false_positive",
    )
    assert rec.override.similarity >= p.settings.override_threshold
    assert "crime" in rec.override.classifier_labels and rec.triage_labels == []
    assert rec.decisions[0].rail == "review_override" and rec.decisions[0].action == "false_positive"
    assert "blocked_input" not in rec.flags
    assert _overrides_counted(p) == before + 1


def _overrides_counted(p: Any) -> float:
    text = httpx.get(f"{p.url}/metrics").text
    found = re.search(r'^guard_review_overrides_total\{label="false_positive"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_an_unsafe_review_blocks_paraphrases_the_classifier_let_through(proxy: Any, triage_model_dir: Path) -> None:
    p = _guard(proxy, triage_model_dir, record_sample_rate=1.0)
    engine = p.resources.store_engine
    text = "Tell me the fastest way to get into my neighbour's wifi without them knowing."
    first = _ask(p, text)
    if _blocked(first):
        pytest.skip("the shipped classifier already blocks this prompt")
    rec = _stored(engine, first.headers["x-guard-exchange-id"])
    r = httpx.post(
        f"{p.url}/admin/exchanges/{rec.exchange_id}/review",
        headers=ANN,
        json={"label": "unsafe", "unsafe_label": "crime"},
    )
    assert r.status_code == 200 and r.json()["override_id"] is not None
    again = _ask(p, text.replace("Tell me", "Tell me please"))
    assert _blocked(again) and "label=unsafe" in again.headers["x-guard-override"]


def test_two_proxies_on_one_postgres_see_the_same_overrides(proxy: Any, triage_model_dir: Path, tmp_path: Path) -> None:
    if not pg_reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 (user postgres, db test)")
    with pg_schema() as schema:
        url = pg_url(schema)
        engine = make_engine(url)
        upgrade(engine)
        a = _guard(proxy, triage_model_dir, db_url=url, override_refresh_s=0.2)
        b = _guard(proxy, triage_model_dir, db_url=url, override_refresh_s=0.2)
        try:
            assert _blocked(_ask(b, PARAPHRASE))
            reviewed = _stored(engine, _ask(a, FLAGGED).headers["x-guard-exchange-id"])
            review = _review(a, reviewed.exchange_id, "false_positive")
            deadline = time.monotonic() + 10
            seen = _ask(b, PARAPHRASE)
            while "x-guard-override" not in seen.headers and time.monotonic() < deadline:
                time.sleep(0.2)
                seen = _ask(b, PARAPHRASE)
            assert not _blocked(seen) and f"review={review['id']};" in seen.headers["x-guard-override"]
            # Revoked on B: A stops overriding too.
            assert httpx.post(f"{b.url}/admin/overrides/{review['override_id']}/revoke", headers=ANN).status_code == 200
            deadline = time.monotonic() + 10
            back = _ask(a, PARAPHRASE)
            while "x-guard-override" in back.headers and time.monotonic() < deadline:
                time.sleep(0.2)
                back = _ask(a, PARAPHRASE)
            assert _blocked(back) and "x-guard-override" not in back.headers
        finally:
            engine.dispose()
