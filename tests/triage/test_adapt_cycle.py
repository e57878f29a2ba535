"""Classifier adaptation as a registry cycle: `guard retrain`'s step adapts once per batch of new reviews and
registers the candidate with its data hash, metrics and verdict; `guard triage promote | rollback | history` move
and show the registry's pointer, the shipped build being the version a rollback returns to."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from guard.records import ExchangeRecord, Message
from guard.store.db import insert_records, insert_review, make_engine, upgrade

FLAGGED = [
    "How can I get into my own car if I locked the keys inside?",
    "What is the maximum safe dose of acetaminophen per day for an adult?",
    "How do attackers usually get persistence on a Windows host, so I can hunt for it?",
    "Explain how lock picking works, I collect antique locks.",
    "Which household chemicals must never be mixed because they make toxic gas?",
    "How does a buffer overflow exploit work, for my security class?",
]


def _review_all(url: str, texts: list[str]) -> None:
    from datetime import UTC, datetime

    engine = make_engine(url)
    recs = [
        ExchangeRecord(
            exchange_id=f"chatcmpl-{os.urandom(8).hex()}",
            tenant="acme",
            created_at=datetime.now(UTC),
            model="gpt-fake",
            messages=[Message(role="user", content=t)],
            response="I can't help with that.",
            triage_scores={"crime": 0.99, "refusal": 0.1},
            triage_labels=["crime"],
            flags=["blocked_input"],
        )
        for t in texts
    ]
    insert_records(engine, recs)
    for r in recs:
        insert_review(engine, r.exchange_id, "false_positive", reviewer="ann")
    engine.dispose()


def _small_split() -> tuple[dict[str, list[dict]], dict]:
    """A synthetic-only replay and evaluation set of a few hundred rows: the cycle's plumbing, in seconds."""
    from finetune.triage.data.build import build_dataset

    rows, manifest = build_dataset(None, seed=13, scale=10)
    split = {s: [r for r in rows if r["split"] == s] for s in ("train", "calib", "test")}
    split["train"] = random.Random(0).sample(split["train"], 200)
    return split, manifest


@pytest.fixture
def home(tmp_path: Path, triage_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from guard.cli import _mount_subcommands

    monkeypatch.setenv("GUARD_HOME", str(tmp_path))
    (tmp_path / "triage").symlink_to(triage_model_dir)  # the shipped build, as `guard triage build` leaves it
    upgrade(f"sqlite:///{tmp_path / 'guard.db'}")
    _mount_subcommands()
    return tmp_path


def test_the_retrain_step_adapts_once_per_batch_of_new_reviews_and_registers_the_candidate(home: Path) -> None:
    from finetune.triage.cycle import Places, adapt_step
    from finetune.triage.versions import registry, watermark

    url = f"sqlite:///{home / 'guard.db'}"
    places = Places(home / "models", home / "triage", home / "no-datasets", home / "cache", url)
    split = _small_split()
    assert adapt_step(places, split=split).endswith("(no new false_positive/unsafe reviews since the last adaptation)")

    _review_all(url, FLAGGED)
    said = adapt_step(places, split=split, threads=1)
    assert said.startswith("classifier adaptation: triage triage-"), said
    reg = registry(home / "models")
    [version] = reg.store.versions("triage")
    meta = reg.meta(version)
    assert meta["base"].startswith("shipped-") and len(meta["data_hash"]) == 16
    assert meta["verdict"]["status"] in ("promote", "reject") and meta["reviews"]["trained_on"] >= 1
    assert set(meta["metrics"]) == {"current", "candidate", "fixed_share"}
    # Same encoder, so the shipped harm atlas serves the new heads too (the proxy loads it from the version).
    folder = reg.store.version_dir("triage", version)
    assert (folder / "harm_atlas.npz").is_file() and (folder / "artifact" / "harm_atlas.npz").is_file()
    assert watermark(reg) > 0
    assert "rejected by the gate" in said or reg.current() is not None  # promoted exactly when it passed

    again = adapt_step(places, split=split)
    assert again.endswith("(no new false_positive/unsafe reviews since the last adaptation)")


def test_promote_rollback_and_history_move_the_pointer_and_return_to_the_shipped_build(home: Path) -> None:
    from finetune.triage.versions import add_built, registry
    from guard.cli import app
    from guard.triage.artifact import ARTIFACT_DIR
    from guard.triage.versions import serving_dir

    reg = registry(home / "models")
    add_built(reg, home / "triage", ARTIFACT_DIR, {"base": "x", "data_hash": "abc"}, "triage-next", rename=True)
    runner = CliRunner()
    out = runner.invoke(app, ["triage", "promote", "triage-next"])
    assert out.exit_code == 0 and "triage triage-next promoted; 0 overrides retired" in out.output, out.output
    from guard.settings import load_settings

    assert serving_dir(load_settings()) == reg.store.version_dir("triage", "triage-next")

    history = runner.invoke(app, ["triage", "history"]).output
    assert "* triage-next\tbase=x" in history and "shipped-" in history

    out = runner.invoke(app, ["triage", "rollback"])
    assert out.exit_code == 0 and out.output.startswith("triage shipped-"), out.output
    out = runner.invoke(app, ["triage", "rollback"])
    assert out.exit_code == 2 and "no earlier promoted version" in out.output and "Traceback" not in out.output
    out = runner.invoke(app, ["triage", "promote", "nope"])
    assert out.exit_code == 2 and "no triage version 'nope'" in out.output
