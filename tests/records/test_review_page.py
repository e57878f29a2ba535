"""The review page end to end in headless Chromium (Debian's chromium + chromedriver via selenium)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from app_support import ADMIN_KEY, TENANT_KEYS, build_app, serve
from records_support import make_record
from sqlalchemy import Engine

from guard.records import Decision, Message
from guard.settings import load_settings
from guard.store.db import insert_records
from guard.store.query import fetch_reviews

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e '.[dev]')")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chrome-profile'}",
    ):
        opts.add_argument(flag)
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager fetch a browser or driver
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def _seed(engine: Engine) -> list:
    t0 = datetime(2026, 6, 1, tzinfo=UTC)
    first = make_record(0, tenant="acme", flags=("blocked_input",), profile="support", created_at=t0)
    first.messages = [Message(role="user", content="How do I reset my router? <script>alert('x')</script>")]
    first.response = "I'm sorry, but I can't help with that."
    first.triage_scores = {"violence": 0.91, "benign": 0.07}
    first.decisions = [
        Decision(rail="triage_block", stage="input", result="block", mode="enforce", score=0.91, latency_s=0.002)
    ]
    second = make_record(1, tenant="globex", flags=("unsafe_compliance",), created_at=t0 + timedelta(minutes=1))
    clean = make_record(2, tenant="acme", created_at=t0 + timedelta(minutes=2))
    insert_records(engine, [first, second, clean])
    return [first, second, clean]


def test_reviewer_signs_in_reads_an_exchange_labels_it_by_hotkey_and_works_through_the_queue(
    browser, engine: Engine, tmp_path: Path
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    first, second, _ = _seed(engine)
    settings = load_settings(home=tmp_path, api_keys=TENANT_KEYS, admin_key=ADMIN_KEY, admin_keys={"key-ann": "ann"})
    with serve(build_app(settings, engine)) as base:
        d = browser
        d.get(f"{base}/admin/review")
        assert "/admin/login" in d.current_url  # not signed in yet

        d.find_element(By.ID, "key").send_keys("not-the-key")
        d.find_element(By.ID, "login").click()
        WebDriverWait(d, 10).until(lambda drv: drv.find_elements(By.ID, "login-error"))
        assert "Wrong admin key" in d.find_element(By.ID, "login-error").text

        d.find_element(By.ID, "key").send_keys("key-ann")
        d.find_element(By.ID, "login").click()
        WebDriverWait(d, 10).until(lambda drv: drv.find_elements(By.ID, "queue"))
        assert d.find_element(By.ID, "reviewer").text == "ann"
        assert d.find_element(By.ID, "queue-total").text == "2"
        rows = d.find_elements(By.CSS_SELECTOR, "#queue tr.queue-row")
        assert [r.get_attribute("data-id") for r in rows] == [first.exchange_id, second.exchange_id]
        cookie = d.get_cookie("guard_admin")
        assert cookie and cookie["httpOnly"] and "key-ann" not in cookie["value"]

        rows[0].find_element(By.TAG_NAME, "a").click()
        WebDriverWait(d, 10).until(lambda drv: drv.find_elements(By.ID, "review-form"))
        page = d.find_element(By.TAG_NAME, "main").text
        assert "<script>alert('x')</script>" in page  # shown as text, never run
        assert "violence\t0.910" in d.find_element(By.ID, "triage-scores").text.replace(" ", "\t")
        decisions = d.find_element(By.ID, "decisions").text
        assert "triage_block" in decisions and "block" in decisions and "enforce" in decisions
        assert "blocked_input" in d.find_element(By.ID, "flags").text

        # Enter saves nothing: not in the label select, and typing "f" in the correction box is only text.
        d.find_element(By.ID, "unsafe-label").send_keys(Keys.ENTER)
        d.find_element(By.ID, "correction").send_keys("Hold the reset button for 10 seconds.")
        assert d.current_url.endswith(f"/admin/review/{first.exchange_id}") and fetch_reviews(engine) == []
        d.find_element(By.TAG_NAME, "h1").click()  # leave the text box: the hotkey now labels
        ActionChains(d).send_keys("f").perform()
        WebDriverWait(d, 10).until(lambda drv: drv.current_url.endswith(f"/admin/review/{second.exchange_id}"))

        Select(d.find_element(By.ID, "unsafe-label")).select_by_value("crime")
        d.find_element(By.ID, "label-unsafe").click()
        WebDriverWait(d, 10).until(lambda drv: drv.find_elements(By.ID, "queue-empty"))
        assert d.find_element(By.ID, "queue-empty").text == "Nothing left to review."

        got = {(r.exchange_id, r.label, r.unsafe_label, r.correction, r.reviewer) for r in fetch_reviews(engine)}
        assert got == {
            (first.exchange_id, "false_positive", None, "Hold the reset button for 10 seconds.", "ann"),
            (second.exchange_id, "unsafe", "crime", None, "ann"),
        }

        d.find_element(By.ID, "logout").click()
        WebDriverWait(d, 10).until(lambda drv: "/admin/login" in drv.current_url)
        d.get(f"{base}/admin/review")
        assert "/admin/login" in d.current_url


def test_session_cookie_is_refused_for_cross_site_posts(engine: Engine, tmp_path: Path) -> None:
    first, _, _ = _seed(engine)
    settings = load_settings(home=tmp_path, api_keys=TENANT_KEYS, admin_key=ADMIN_KEY)
    with serve(build_app(settings, engine)) as base, httpx.Client(base_url=base) as client:
        login = client.post("/admin/login", data={"key": ADMIN_KEY})
        assert login.status_code == 303 and "guard_admin" in client.cookies
        evil = client.post(
            f"/admin/review/{first.exchange_id}", data={"label": "correct"}, headers={"origin": "https://evil.example"}
        )
        assert evil.status_code == 403
        same = client.post(f"/admin/review/{first.exchange_id}", data={"label": "correct"}, headers={"origin": base})
        assert same.status_code == 303
        assert [(r.label, r.reviewer) for r in fetch_reviews(engine)] == [("correct", "admin")]
        client.cookies.set("guard_admin", "9999999999.forged", path="/admin")
        assert client.get("/admin/review").status_code == 303
