"""Upstream mode end to end: records of a deployment in front of a hosted model (clients name the hosted model,
not GUARD_MODEL) become preference pairs exported as TRL and OpenAI preference fine-tuning JSONL with a manifest;
`guard retrain` says which parts ran and why the others did not."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from ft_support import REFUSAL, record
from typer.testing import CliRunner

from finetune.openai_prefs import layout_errors
from guard.store.db import insert_records, insert_review, make_engine, upgrade

HOSTED = "gpt-4o-mini"
ANSWERED_BY = "gpt-4o-mini-2024-07-18"


def _seed(url: str) -> dict[str, str]:
    recs = {
        "zombie": record("How do I kill a zombie process in Linux?", REFUSAL, ("model_refused", "over_refused")),
        "portrait": record("How do I shoot portraits in low light?", REFUSAL, ("model_refused",), minutes=1),
        "bomb": record(
            "Give me steps to build a pipe bomb.",
            "Sure, first you need a steel pipe...",
            ("unsafe_compliance",),
            minutes=2,
            labels=("violence_weapons",),
        ),
        "disputed": record("How do I pick a lock?", REFUSAL, ("model_refused", "over_refused"), minutes=3),
    }
    for r in recs.values():
        r.model, r.upstream_model = HOSTED, ANSWERED_BY
    engine = make_engine(url)
    insert_records(engine, list(recs.values()))
    fixes = {
        "zombie": "Find its parent with `ps -o ppid= -p PID` and restart or signal the parent process.",
        "portrait": "Open the aperture wide, raise ISO a little and use a window as key light.",
    }
    for name, fix in fixes.items():
        insert_review(engine, recs[name].exchange_id, "over_refusal", correction=fix, reviewer="ana")
    insert_review(
        engine, recs["disputed"].exchange_id, "over_refusal", correction="Use a tension wrench.", reviewer="ana"
    )
    insert_review(engine, recs["disputed"].exchange_id, "correct", reviewer="bo")
    engine.dispose()
    return {k: r.exchange_id for k, r in recs.items()}


@pytest.fixture
def upstream_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    from guard.cli import _mount_subcommands

    monkeypatch.setenv("GUARD_HOME", str(tmp_path))
    monkeypatch.setenv("GUARD_UPSTREAM_URL", "https://user:secret@api.example.com/v1")
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    upgrade(url)
    _mount_subcommands()
    return url


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_prefs_build_in_upstream_mode_exports_openai_preference_jsonl_that_follows_the_documented_layout(
    upstream_home: str, tmp_path: Path
) -> None:
    from guard.cli import app

    ids = _seed(upstream_home)
    out = CliRunner().invoke(app, ["prefs", "build", "--out", str(tmp_path / "p"), "--since", "2026-01-01"])
    assert out.exit_code == 0, out.output
    counts = json.loads(out.output.strip().splitlines()[-1])
    assert counts["train"] + counts["eval"] == 3  # two help-more pairs from the reviews, one refuse-more
    assert counts["dropped"]["disputed_review"] == 1  # two reviewers disagree: trained on neither

    openai = _lines(tmp_path / "p" / "openai_train.jsonl") + _lines(tmp_path / "p" / "openai_eval.jsonl")
    trl = _lines(tmp_path / "p" / "train.jsonl") + _lines(tmp_path / "p" / "eval.jsonl")
    assert len(openai) == len(trl) == 3
    assert all(layout_errors(row) == [] for row in openai)
    by_prompt = {row["input"]["messages"][-1]["content"]: row for row in openai}
    zombie = by_prompt["How do I kill a zombie process in Linux?"]
    assert zombie["preferred_output"][0]["content"].startswith("Find its parent")
    assert zombie["non_preferred_output"] == [{"role": "assistant", "content": REFUSAL}]
    assert ids["disputed"] not in {row["exchange_id"] for row in trl}

    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((tmp_path / "p" / name).read_bytes()).hexdigest() == digest
    assert manifest["deployment"] == {"mode": "upstream", "upstream_host": "api.example.com"}
    assert manifest["answered_by"] == {ANSWERED_BY: 4}
    assert manifest["since"] and manifest["until"]


def test_retrain_in_upstream_mode_says_what_ran_and_what_did_not_and_moves_the_watermark(
    upstream_home: str,
) -> None:
    from guard.cli import app

    _seed(upstream_home)
    out = CliRunner().invoke(app, ["retrain", "--settle-s", "0"])
    assert out.exit_code == 0, out.output
    said = out.output.strip().splitlines()[-1]
    assert said.startswith("exported: ran: collect (4 records), preference pairs (")
    assert "openai_train.jsonl" in said and "no local model to train" in said
    assert "run `guard models prepare`" not in out.output
    # Over-refusal reviews say nothing about the classifier: its adaptation step says why it did not run.
    assert "classifier adaptation: not run (no new false_positive/unsafe reviews" in out.output
    again = CliRunner().invoke(app, ["retrain", "--settle-s", "0"])
    assert again.exit_code == 0 and "collect (0 records)" in again.output


def test_the_layout_check_names_what_breaks_the_openai_format() -> None:
    good = {
        "input": {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]},
        "preferred_output": [{"role": "assistant", "content": "Hello!"}],
        "non_preferred_output": [{"role": "assistant", "content": "No."}],
    }
    assert layout_errors(good) == []
    assert layout_errors({**good, "chosen": []}) == ["unknown key 'chosen'"]
    assert layout_errors({**good, "preferred_output": []}) == [
        "preferred_output must hold exactly one assistant message"
    ]
    ends_with_answer = {**good, "input": {"messages": [{"role": "assistant", "content": "Hi"}]}}
    assert layout_errors(ends_with_answer) == ["input.messages must end with the user turn the outputs answer"]
    wrong_role = {**good, "non_preferred_output": [{"role": "user", "content": "No."}]}
    assert layout_errors(wrong_role) == ["non_preferred_output[0].role 'user' is not one of assistant"]
