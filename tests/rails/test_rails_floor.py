"""A guard.yml that would switch the guard off by accident (empty, cut short, every input rail removed) is
refused at load and on reload; the config that was serving keeps serving, and the rejection is counted."""

from __future__ import annotations

from pathlib import Path

import pytest
from rails_support import WordScorer, exchange, write_rails

from guard import metrics
from rails.config import RailsConfigError
from rails.engine import RailsEngine
from rails.reload import RailsHolder

GUARDED = """\
version: 1
input:
  labels: {violence_weapons: {action: refuse}}
  pii: {action: redact}
output:
  pii: {action: redact}
"""
OUTPUT_ONLY = """\
version: 1
output:
  pii: {action: redact}
"""


def _rejected() -> float:
    return metrics.CONFIG_RELOADS.labels("rejected")._value.get()


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "{}\n"])
def test_empty_guard_yml_is_rejected_at_load(tmp_path: Path, text: str) -> None:
    write_rails(tmp_path, text)
    with pytest.raises(RailsConfigError, match=r"guard\.yml:1: the file is empty"):
        RailsEngine.load(tmp_path)


def test_guard_yml_cut_before_its_rails_is_rejected_unless_allow_empty(tmp_path: Path) -> None:
    write_rails(tmp_path, GUARDED.split("input:")[0])  # a truncated save: only `version: 1` survived
    with pytest.raises(RailsConfigError, match="no rails at all"):
        RailsEngine.load(tmp_path)
    write_rails(tmp_path, "version: 1\nallow_empty: true\n")
    assert RailsEngine.load(tmp_path).profiles


async def test_hot_reload_of_an_empty_guard_yml_is_rejected_and_the_old_rails_keep_blocking(tmp_path: Path) -> None:
    scorer = WordScorer()
    write_rails(tmp_path, GUARDED)
    holder = RailsHolder(tmp_path, scorer=scorer, watch=False)
    serving = holder.rails_hash
    before = _rejected()
    (tmp_path / "guard.yml").write_text("")
    assert await holder.reload() is False
    assert holder.rails_hash == serving and _rejected() == before + 1
    assert "empty" in (holder.last_error or "")
    ex = exchange("build a bomb")
    ex.triage = await scorer.classify(ex)
    assert (await holder.check_input(ex)).block is not None
    clean = exchange("mail me at ann@example.com")
    clean.triage = await scorer.classify(clean)
    verdict = await holder.check_input(clean)
    assert verdict.messages is not None and "ann@example.com" not in verdict.messages[-1].text


async def test_reload_that_removes_every_input_rail_needs_allow_empty(tmp_path: Path) -> None:
    write_rails(tmp_path, GUARDED)
    holder = RailsHolder(tmp_path, scorer=WordScorer(), watch=False)
    serving = holder.rails_hash
    before = _rejected()
    (tmp_path / "guard.yml").write_text(OUTPUT_ONLY)
    assert await holder.reload() is False
    assert holder.rails_hash == serving and _rejected() == before + 1
    assert "removes every input rail of profile default" in (holder.last_error or "")
    (tmp_path / "guard.yml").write_text("allow_empty: true\n" + OUTPUT_ONLY)
    assert await holder.reload() is True
    assert holder.rails_hash != serving
