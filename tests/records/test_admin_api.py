"""Admin API and feedback over real HTTP: admin-key only, tenant isolation, filters, export, reviews."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from app_support import ADMIN_KEY, TENANT_KEYS, build_app, serve
from records_support import make_exchange, make_record
from sqlalchemy import Engine

from guard.settings import load_settings
from guard.store.db import insert_records
from guard.store.query import fetch_feedback, fetch_record, fetch_reviews
from guard.store.writer import RecordWriter

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
REVIEWER_KEYS = {"key-ann": "ann", "key-bob": "bob"}
ANN = {"authorization": "Bearer key-ann"}
BOB = {"authorization": "Bearer key-bob"}
ACME = {"authorization": "Bearer key-acme"}
GLOBEX = {"authorization": "Bearer key-globex"}
T0 = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture
def seeded(engine: Engine) -> list:
    recs = [
        make_record(0, tenant="acme", flags=("blocked_input",), profile="kids", created_at=T0),
        make_record(1, tenant="acme", flags=("over_refused", "model_refused"), created_at=T0 + timedelta(hours=1)),
        make_record(2, tenant="globex", flags=("blocked_input",), created_at=T0 + timedelta(hours=2)),
        make_record(3, tenant="globex", created_at=T0 + timedelta(hours=3)),
    ]
    insert_records(engine, recs)
    return recs


@pytest.fixture
def base(engine: Engine, tmp_path: Path) -> Iterator[str]:
    settings = load_settings(home=tmp_path, api_keys=TENANT_KEYS, admin_key=ADMIN_KEY, admin_keys=REVIEWER_KEYS)
    with serve(build_app(settings, engine)) as url:
        yield url


def _ids(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [r["exchange_id"] for r in resp.json()["data"]]


@pytest.mark.parametrize(
    "path", ["/admin/exchanges", "/admin/queue", "/admin/exchanges.jsonl", "/admin/exchanges/ex-1"]
)
def test_tenant_keys_and_missing_keys_never_reach_admin_routes(base: str, seeded: list, path: str) -> None:
    for headers in (ACME, GLOBEX, {}, {"authorization": "Bearer wrong"}):
        resp = httpx.get(base + path, headers=headers)
        assert resp.status_code == 401, (headers, resp.text)
        assert resp.json()["error"]["type"] == "authentication_error"
    resp = httpx.post(f"{base}/admin/exchanges/{seeded[0].exchange_id}/review", headers=ACME, json={"label": "correct"})
    assert resp.status_code == 401
    assert fetch_reviews_count(base) == 0


def fetch_reviews_count(base: str) -> int:
    return sum(
        len(httpx.get(f"{base}/admin/exchanges/{e}", headers=ADMIN).json()["reviews"])
        for e in _ids(httpx.get(f"{base}/admin/exchanges", headers=ADMIN))
    )


def test_admin_api_is_disabled_when_no_admin_key_is_configured(engine: Engine, tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, api_keys=TENANT_KEYS)
    with serve(build_app(settings, engine)) as url:
        resp = httpx.get(f"{url}/admin/exchanges", headers={"authorization": "Bearer anything"})
        assert resp.status_code == 401 and "GUARD_ADMIN_KEY" in resp.json()["error"]["message"]


def test_admin_queries_exchanges_by_tenant_flag_profile_and_time(base: str, seeded: list) -> None:
    ids = [r.exchange_id for r in seeded]
    q = f"{base}/admin/exchanges"
    assert _ids(httpx.get(q, headers=ADMIN)) == ids
    assert _ids(httpx.get(q, params={"tenant": "acme"}, headers=ADMIN)) == ids[:2]
    assert _ids(httpx.get(q, params={"flag": "blocked_input"}, headers=ADMIN)) == [ids[0], ids[2]]
    assert _ids(httpx.get(q, params=[("flag", "blocked_input"), ("flag", "over_refused")], headers=ADMIN)) == ids[:3]
    assert _ids(httpx.get(q, params={"profile": "kids"}, headers=ADMIN)) == [ids[0]]
    window = {"since": "2026-05-01T00:30:00Z", "until": "2026-05-01T02:30:00+00:00"}
    assert _ids(httpx.get(q, params=window, headers=ADMIN)) == ids[1:3]
    assert _ids(httpx.get(q, params={"limit": "1"}, headers=ADMIN)) == ids[:1]
    assert _ids(httpx.get(q, params={"tenant": "globex", "flagged": "false"}, headers=ADMIN)) == [ids[3]]
    bad = httpx.get(q, params={"flag": "nope"}, headers=ADMIN)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "flag"
    assert httpx.get(q, params={"since": "yesterday"}, headers=ADMIN).status_code == 400
    assert httpx.get(q, params={"limit": "0"}, headers=ADMIN).status_code == 400


def test_export_streams_matching_records_as_json_lines(base: str, seeded: list) -> None:
    resp = httpx.get(f"{base}/admin/exchanges.jsonl", params={"tenant": "globex"}, headers=ADMIN)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in resp.text.splitlines()]
    assert [rec["exchange_id"] for rec in lines] == [seeded[2].exchange_id, seeded[3].exchange_id]
    assert {rec["tenant"] for rec in lines} == {"globex"}


def test_reviewer_labels_a_flagged_exchange_with_a_correction_and_it_leaves_the_queue(
    base: str, seeded: list, engine: Engine
) -> None:
    target = seeded[1].exchange_id
    assert _ids(httpx.get(f"{base}/admin/queue", headers=ADMIN)) == [
        seeded[0].exchange_id,
        target,
        seeded[2].exchange_id,
    ]
    resp = httpx.post(
        f"{base}/admin/exchanges/{target}/review",
        headers=ANN,
        json={"label": "over_refusal", "correction": "Here is how to reset it."},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["reviewer"] == "ann" and resp.json()["disputed"] is False
    assert target not in _ids(httpx.get(f"{base}/admin/queue", headers=ADMIN))
    detail = httpx.get(f"{base}/admin/exchanges/{target}", headers=ADMIN).json()
    assert detail["record"]["flags"] == ["model_refused", "over_refused"]
    assert [(r["label"], r["correction"]) for r in detail["reviews"]] == [("over_refusal", "Here is how to reset it.")]
    assert [(r.label, r.reviewer) for r in fetch_reviews(engine)] == [("over_refusal", "ann")]
    claimed = httpx.post(
        f"{base}/admin/exchanges/{target}/review", headers=ANN, json={"label": "correct", "reviewer": "bob"}
    )
    assert claimed.status_code == 400 and claimed.json()["error"]["param"] == "reviewer"
    bad = httpx.post(f"{base}/admin/exchanges/{target}/review", headers=ADMIN, json={"label": "fine"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "label"
    missing = httpx.post(f"{base}/admin/exchanges/nope/review", headers=ADMIN, json={"label": "correct"})
    assert missing.status_code == 404
    assert httpx.get(f"{base}/admin/exchanges/nope", headers=ADMIN).status_code == 404


def test_tenant_gives_feedback_on_its_own_exchange_only(base: str, seeded: list, engine: Engine) -> None:
    own, foreign = seeded[0].exchange_id, seeded[2].exchange_id
    ok = httpx.post(f"{base}/v1/feedback", headers=ACME, json={"exchange_id": own, "rating": -1, "comment": "meh"})
    assert ok.status_code == 200, ok.text
    assert fetch_record(engine, own).flags == ["blocked_input", "negative_feedback"]
    other = httpx.post(f"{base}/v1/feedback", headers=ACME, json={"exchange_id": foreign, "rating": -1})
    missing = httpx.post(f"{base}/v1/feedback", headers=ACME, json={"exchange_id": "chatcmpl-nope", "rating": -1})
    assert other.status_code == missing.status_code == 404
    assert other.json()["error"]["message"].replace(foreign, "X") == missing.json()["error"]["message"].replace(
        "chatcmpl-nope", "X"
    )
    assert fetch_record(engine, foreign).flags == ["blocked_input"]
    assert httpx.post(f"{base}/v1/feedback", json={"exchange_id": own, "rating": 1}).status_code == 401
    assert httpx.post(f"{base}/v1/feedback", headers=ACME, json={"exchange_id": own, "rating": 7}).status_code == 400
    assert httpx.post(f"{base}/v1/feedback", headers=ACME, content=b"{not json").status_code == 400
    assert [(f.tenant, f.rating, f.comment) for f in fetch_feedback(engine)] == [("acme", -1, "meh")]


async def test_feedback_on_a_clean_unsampled_exchange_keeps_it(engine: Engine, tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, api_keys=TENANT_KEYS, admin_key=ADMIN_KEY)
    writer = RecordWriter(engine, spool_dir=tmp_path / "spool", sample_rate=0.0)
    await writer.start()
    ex = make_exchange(1, tenant="acme")
    writer.record(ex)  # clean and not sampled: not stored
    with serve(build_app(settings, engine, writer)) as url:
        assert (
            httpx.post(f"{url}/v1/feedback", headers=GLOBEX, json={"exchange_id": ex.id, "rating": -1}).status_code
            == 404
        )
        resp = httpx.post(f"{url}/v1/feedback", headers=ACME, json={"exchange_id": ex.id, "rating": -1})
        assert resp.status_code == 200, resp.text
    await writer.aclose()
    rec = fetch_record(engine, ex.id)
    assert rec is not None and rec.flags == ["negative_feedback"] and rec.tenant == "acme"


def test_two_reviewers_disagreeing_put_the_exchange_back_in_the_queue_until_they_agree(
    base: str, seeded: list, engine: Engine
) -> None:
    target = seeded[0].exchange_id
    review = f"{base}/admin/exchanges/{target}/review"
    assert httpx.post(review, headers=ANN, json={"label": "false_positive"}).json()["disputed"] is False
    assert target not in _ids(httpx.get(f"{base}/admin/queue", headers=ADMIN))
    second = httpx.post(review, headers=BOB, json={"label": "unsafe", "unsafe_label": "crime"}).json()
    assert second["disputed"] is True and second["override_id"] is None
    assert target in _ids(httpx.get(f"{base}/admin/queue", headers=ADMIN))
    # Ann changes her mind: her earlier review is superseded, the reviewers agree, the exchange leaves the queue.
    third = httpx.post(review, headers=ANN, json={"label": "unsafe", "unsafe_label": "crime"}).json()
    assert third["disputed"] is False and third["override_id"] is not None
    assert target not in _ids(httpx.get(f"{base}/admin/queue", headers=ADMIN))
    stored = fetch_reviews(engine, exchange_id=target)
    assert [(r.reviewer, r.label, r.superseded) for r in stored] == [
        ("ann", "false_positive", True),
        ("bob", "unsafe", False),
        ("ann", "unsafe", False),
    ]
    assert stored[0].decision is not None and json.loads(stored[0].decision)["flags"] == ["blocked_input"]


def test_unsafe_without_the_label_it_should_have_had_is_a_400_naming_the_choices(base: str, seeded: list) -> None:
    resp = httpx.post(f"{base}/admin/exchanges/{seeded[0].exchange_id}/review", headers=ANN, json={"label": "unsafe"})
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "unsafe_label" and "violence_weapons" in resp.json()["error"]["message"]


def test_queue_pages_carry_the_true_total_and_filters_narrow_it(base: str, seeded: list) -> None:
    first = httpx.get(f"{base}/admin/queue", headers=ADMIN, params={"limit": 2}).json()
    assert first["total"] == 3 and len(first["data"]) == 2
    rest = httpx.get(f"{base}/admin/queue", headers=ADMIN, params={"limit": 2, "offset": 2}).json()
    assert rest["total"] == 3 and [r["exchange_id"] for r in rest["data"]] == [seeded[2].exchange_id]
    acme = httpx.get(f"{base}/admin/queue", headers=ADMIN, params={"tenant": "acme", "flag": "blocked_input"}).json()
    assert acme["total"] == 1 and acme["data"][0]["exchange_id"] == seeded[0].exchange_id
    bad = httpx.get(f"{base}/admin/queue", headers=ADMIN, params={"offset": "-1"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "offset"


def test_the_overrides_page_lists_an_active_override_and_its_revoke_button_revokes_it(
    base: str, seeded: list, engine: Engine
) -> None:
    target = seeded[0].exchange_id
    made = httpx.post(f"{base}/admin/exchanges/{target}/review", headers=ANN, json={"label": "false_positive"}).json()
    override_id = made["override_id"]
    assert override_id is not None
    with httpx.Client(base_url=base) as browser:
        assert browser.post("/admin/login", data={"key": "key-bob"}).status_code == 303
        listing = browser.get("/admin/corrections")
        assert listing.status_code == 200
        assert f'data-id="{override_id}"' in listing.text and f"review {made['id']}" in listing.text
        revoked = browser.post(f"/admin/corrections/{override_id}/revoke", headers={"origin": base})
        assert revoked.status_code == 303 and revoked.headers["location"] == f"/admin/corrections?revoked={override_id}"
        assert 'id="overrides-empty"' in browser.get("/admin/corrections").text
    assert httpx.get(f"{base}/admin/overrides", headers=ADMIN).json()["data"] == []


def test_the_review_page_queue_filters_by_tenant_and_flag_and_counts_every_match(base: str, seeded: list) -> None:
    with httpx.Client(base_url=base) as browser:
        assert browser.post("/admin/login", data={"key": "key-ann"}).status_code == 303
        everything = browser.get("/admin/review")
        assert '<b id="queue-total">3</b>' in everything.text and 'id="reviewer">ann<' in everything.text
        acme = browser.get("/admin/review", params={"tenant": "acme", "flag": "blocked_input"})
        assert '<b id="queue-total">1</b>' in acme.text and seeded[0].exchange_id in acme.text
        assert seeded[2].exchange_id not in acme.text
        assert browser.get("/admin/review", params={"flag": "nonsense"}).status_code == 400
