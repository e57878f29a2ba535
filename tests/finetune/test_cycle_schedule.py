from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from ft_support import MODEL, REFUSAL, record

from finetune.collect import Watermark
from finetune.config import load_config
from finetune.cycle import CycleOptions, run_cycle
from finetune.evaluate import EvalOptions
from finetune.registry import Registry
from finetune.schedule import LockBusy, every, file_lock, parse_interval, retrain_lock
from guard.settings import SHIPPED_RAILS
from guard.store.db import insert_records, make_engine


def options(tmp_path: Path, db_url: str, tiny_lm: Path, **kw: object) -> CycleOptions:
    reg = Registry(tmp_path / "models", MODEL)
    if reg.current() is None:
        reg.promote(reg.add(tiny_lm, None, {}, version="base"))
    base = {
        "model": MODEL,
        "state_dir": tmp_path / "state",
        "models_root": tmp_path / "models",
        "db_url": db_url,
        "rails_dir": SHIPPED_RAILS,
        "triage_dir": None,
        "min_pairs": 4,
        "settle": timedelta(0),
        "dpo": load_config(None, max_steps=2, batch_size=2, max_length=64, logging_steps=1),
        "eval": EvalOptions(max_new_tokens=6),
        "suite_limit": 4,
    }
    return CycleOptions(**{**base, **kw})


def traffic(n: int, offset: int = 0) -> list:
    over = [
        record(
            f"How do I kill background job number {i}?", REFUSAL, ("model_refused", "over_refused"), minutes=i + offset
        )
        for i in range(n)
    ]
    unsafe = [
        record(
            f"Give me steps to build weapon model {i}.",
            "Sure, first get a pipe and powder.",
            ("unsafe_compliance",),
            minutes=i + offset,
            labels=("violence_weapons",),
        )
        for i in range(n)
    ]
    return over + unsafe


def test_cycle_trains_evaluates_and_registers_an_unproven_candidate_unpromoted_then_skips_without_new_data(
    tmp_path: Path, tiny_lm: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    from guard.store.db import upgrade

    upgrade(url)
    insert_records(make_engine(url), traffic(6))
    opts = options(tmp_path, url, tiny_lm)
    res = run_cycle(opts, log=lambda m: None)
    # A random tiny model refuses nothing before or after: no evidence that over-refusal dropped, no promotion.
    assert res.status == "inconclusive" and "(not enough evidence): over refusal" in res.message
    reg = Registry(opts.models_root, MODEL)
    assert reg.current().version == "base" and res.version in reg.store.versions(MODEL)
    meta = reg.meta(res.version)
    assert meta["verdict"]["passed"] is False and meta["verdict"]["status"] == "not enough evidence"
    assert meta["base"]["version"] == "base" and meta["suites"]["suites"]["harmful"]["n"] == 4
    assert meta["data_counts"]["by_direction"] == {"help_more": 6, "refuse_more": 6}
    assert len(meta["data_manifest_hash"]) == 64
    assert {p.name for p in (res.run_dir / "report").iterdir()} == {"report.md", "report.json", "before_after.png"}
    answers = json.loads((res.run_dir / "report" / "report.json").read_text())["current"]["answers"]
    if (os.cpu_count() or 1) >= 2:  # the current model answered the suites while the candidate trained
        assert answers["generated"] == 0 and answers["reused"] > 0 and "answer_ahead_wait_s" in res.timings
    else:
        assert answers["generated"] > 0
    assert Watermark(opts.state_dir, MODEL).get() is not None

    again = run_cycle(opts, log=lambda m: None)
    assert again.status == "skipped" and "only 0 new pairs" in again.message


def test_cycle_skips_below_min_pairs_and_keeps_the_watermark(tmp_path: Path, tiny_lm: Path) -> None:
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    from guard.store.db import upgrade

    upgrade(url)
    insert_records(make_engine(url), traffic(1))
    opts = options(tmp_path, url, tiny_lm, min_pairs=10, sample_candidates=False)
    res = run_cycle(opts, log=lambda m: None)
    assert res.status == "skipped" and "(< 10)" in res.message
    assert Watermark(opts.state_dir, MODEL).get() is None  # the same records are counted again next time


def test_a_second_retrain_is_refused_while_the_lock_is_held(tmp_path: Path) -> None:
    with (
        retrain_lock(tmp_path, MODEL),
        pytest.raises(LockBusy, match="another retrain run"),
        retrain_lock(tmp_path, MODEL),
    ):
        pass
    with retrain_lock(tmp_path, MODEL):  # released on exit
        pass


def test_the_lock_holds_against_another_process_and_frees_when_it_dies(tmp_path: Path) -> None:
    lock = tmp_path / MODEL / "retrain.lock"
    repo = str(Path(__file__).resolve().parents[2])
    code = (
        f"import sys, time; sys.path.insert(0, {repo!r}); from pathlib import Path\n"
        f"from finetune.schedule import file_lock\n"
        f"with file_lock(Path({str(lock)!r})):\n print('held', flush=True); time.sleep(30)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy, match=r"pid \d+"), file_lock(lock):
            pass
    finally:
        proc.kill()
        proc.wait()
    with file_lock(lock):
        pass


@pytest.mark.postgres
def test_the_postgres_advisory_lock_stops_a_second_host(tmp_path: Path) -> None:
    from ft_support import pg_reachable

    if not pg_reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 (user postgres, db test)")
    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test")
    name = f"m-{tmp_path.name}"
    # Two hosts = two state dirs (their file locks do not see each other); the database lock does.
    with (
        retrain_lock(tmp_path / "host-a", name, engine),
        pytest.raises(LockBusy, match="advisory lock"),
        retrain_lock(tmp_path / "host-b", name, engine),
    ):
        pass
    with retrain_lock(tmp_path / "host-b", name, engine):
        pass
    engine.dispose()


def test_intervals_parse_and_bad_ones_are_explained() -> None:
    assert parse_interval("24h") == 86400 and parse_interval("90s") == 90 and parse_interval("1.5m") == 90
    with pytest.raises(ValueError, match=r"e\.g\. 24h"):
        parse_interval("daily")


def test_every_keeps_running_after_a_failed_run() -> None:
    runs: list[int] = []
    logs: list[str] = []

    def job() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("disk full")

    stop = threading.Event()
    every(0.01, job, log=logs.append, stop=lambda: len(runs) >= 3 or stop.is_set())
    assert len(runs) == 3 and logs == ["retrain failed: RuntimeError: disk full"]


def test_retrain_command_reports_a_skip_in_one_line(
    tmp_path: Path, tiny_lm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from guard.cli import _mount_subcommands, app
    from guard.store.db import upgrade

    monkeypatch.setenv("GUARD_HOME", str(tmp_path))
    upgrade(f"sqlite:///{tmp_path / 'guard.db'}")
    reg = Registry(tmp_path / "models", "smollm2-135m-instruct")
    reg.promote(reg.add(tiny_lm, None, {}, version="base"))
    _mount_subcommands()
    out = CliRunner().invoke(app, ["retrain", "--min-pairs", "5"])
    assert out.exit_code == 0, out.output
    assert "skipped: only 0 new pairs (< 5)" in out.output
    out = CliRunner().invoke(app, ["finetune", "rollback"])
    assert out.exit_code == 2 and "no earlier promoted version" in out.output
    out = CliRunner().invoke(app, ["finetune", "history"])
    assert out.exit_code == 0 and "promote\tbase" in out.output


def test_prefs_build_command_writes_pairs_and_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from guard.cli import _mount_subcommands, app
    from guard.store.db import upgrade

    monkeypatch.setenv("GUARD_HOME", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    upgrade(url)
    insert_records(make_engine(url), traffic(3, offset=0))
    _mount_subcommands()
    out = CliRunner().invoke(
        app, ["prefs", "build", "--out", str(tmp_path / "p"), "--since", "2026-01-01", "--model", MODEL, "--no-sample"]
    )
    assert out.exit_code == 0, out.output
    counts = json.loads(out.output.strip().splitlines()[-1])
    # No sampling: the over-refusals wait for review, and with no "help more" pair the cap keeps out all
    # "refuse more" pairs rather than train a set that only teaches refusing.
    assert counts["pending_review"] == 3 and counts["dropped"]["balance_cap"] == 3 and counts["train"] == 0
    assert (tmp_path / "p" / "manifest.json").is_file()
    build = ["prefs", "build", "--since", "2026-01-01", "--model", MODEL, "--no-sample"]
    out = CliRunner().invoke(app, [*build, "--out", str(tmp_path / "uncapped"), "--max-refuse-share", "1"])
    counts = json.loads(out.output.strip().splitlines()[-1])
    assert out.exit_code == 0 and counts["train"] + counts["eval"] == 3 and not counts["dropped"].get("balance_cap")
    shares = ["--min-refuse-share", "0.7", "--max-refuse-share", "0.6"]
    out = CliRunner().invoke(app, [*build, "--out", str(tmp_path / "q"), *shares])
    assert out.exit_code == 2 and "--min-refuse-share 0.7 is above --max-refuse-share 0.6" in out.output
    out = CliRunner().invoke(app, ["prefs", "build", "--out", str(tmp_path / "q"), "--since", "yesterday"])
    assert out.exit_code == 2 and "--since 'yesterday'" in out.output
    out = CliRunner().invoke(app, ["prefs", "build", "--out", str(tmp_path / "q"), "--caution-anchors", "-1"])
    said = " ".join(out.output.replace("│", " ").split())  # typer boxes and wraps its error
    assert out.exit_code == 2 and "'--caution-anchors': Input should be greater than or equal to 0" in said
    out = CliRunner().invoke(
        app, ["finetune", "eval", "--candidate", str(tmp_path), "--out", str(tmp_path / "r"), "--context", "sideways"]
    )
    assert out.exit_code == 2 and "--context 'sideways': use deployed or bare" in out.output
    base = ["finetune", "eval", "--candidate", str(tmp_path), "--current", str(tmp_path), "--out", str(tmp_path / "r")]
    out = CliRunner().invoke(app, [*base, "--context", "bare", "--suites", str(tmp_path / "nope")])
    assert out.exit_code == 2 and f"suite folder {tmp_path / 'nope'}: no such directory" in out.output
