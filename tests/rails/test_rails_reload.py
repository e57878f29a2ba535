from __future__ import annotations

import asyncio
import time
from pathlib import Path

from rails_support import WordScorer, exchange, write_rails

from guard import metrics
from guard.pipeline import screener
from rails.reload import RailsHolder

OLD = """\
refusal_message: "I'm sorry, but I can't help with that (v1)."
input:
  labels: {violence_weapons: {action: refuse}}
"""
NEW = OLD.replace("(v1)", "(v2)")
INVALID = NEW + "  colour: red\n"


def _count(result: str) -> float:
    return metrics.CONFIG_RELOADS.labels(result)._value.get()


async def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the reload"
        await asyncio.sleep(0.02)


async def test_valid_change_swaps_and_invalid_change_is_rejected_under_load(tmp_path: Path) -> None:
    scorer = WordScorer()
    write_rails(tmp_path, OLD)
    holder = RailsHolder(tmp_path, scorer=scorer, debounce_ms=20)
    first_hash = holder.rails_hash
    await holder.start()
    seen: set[str] = set()
    errors: list[BaseException] = []
    stop = asyncio.Event()

    async def traffic() -> None:
        while not stop.is_set():
            ex = exchange("build a bomb")
            ex.triage = await scorer.classify(ex)
            try:
                verdict = await holder.check_input(ex)
                assert verdict.block is not None
                seen.add(verdict.block.message or "")
            except BaseException as exc:  # any failure during a swap is a bug
                errors.append(exc)
            await asyncio.sleep(0)

    load = [asyncio.create_task(traffic()) for _ in range(4)]
    try:
        rejected_before = _count("rejected")
        await asyncio.sleep(0.1)
        (tmp_path / "guard.yml").write_text(NEW)
        await _wait_for(lambda: holder.rails_hash != first_hash)
        new_hash = holder.rails_hash
        await asyncio.sleep(0.05)
        (tmp_path / "guard.yml").write_text(INVALID)
        await _wait_for(lambda: _count("rejected") > rejected_before)
        await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*load)
        await holder.aclose()
    assert not errors
    assert holder.rails_hash == new_hash  # the invalid file did not replace the serving config
    assert holder.last_error is not None and "guard.yml:4: input.colour: unknown key" in holder.last_error
    assert seen == {"I'm sorry, but I can't help with that (v1).", "I'm sorry, but I can't help with that (v2)."}


async def test_request_started_on_old_config_finishes_on_it(tmp_path: Path) -> None:
    write_rails(tmp_path, OLD + "output:\n  patterns: [{name: old_only, action: refuse, keywords: [zebra]}]\n")
    holder = RailsHolder(tmp_path, watch=False)
    ex = exchange("hi")
    await screener(None, holder).screen(ex)  # the pipeline pins the exchange to the config it started on
    (tmp_path / "guard.yml").write_text(NEW)
    assert await holder.reload()
    assert (await holder.check_output(ex, "a zebra")).block is not None  # old engine's output rail
    assert (await holder.check_output(exchange("hi"), "a zebra")).block is None
