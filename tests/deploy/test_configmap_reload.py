"""Hot reload from a Kubernetes ConfigMap volume: the kubelet never edits files in place, it swaps a symlink.

The layout and update sequence below are the kubelet's AtomicWriter: files live in a timestamped hidden
directory, `..data` points at it, and each visible name is a symlink through `..data`. An update writes a new
directory, points `..data_tmp` at it, renames `..data_tmp` over `..data` and removes the old directory.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from guard.domain import Message
from guard.pipeline import Exchange
from rails.reload import RailsHolder

CONFIG = (
    'refusal_message: "refused by {word}"\ninput:\n  patterns: [{{name: animal, action: refuse, keywords: [{word}]}}]\n'
)


def kubelet_write(volume: Path, files: dict[str, str], generation: int) -> None:
    payload = volume / f"..2026_12_04_02_00_{generation:02d}.000000001"
    payload.mkdir()
    for name, text in files.items():
        (payload / name).write_text(text)
    old = os.readlink(volume / "..data") if (volume / "..data").is_symlink() else None
    os.symlink(payload.name, volume / "..data_tmp")
    os.rename(volume / "..data_tmp", volume / "..data")
    for name in files:
        if not (volume / name).is_symlink():
            os.symlink(f"..data/{name}", volume / name)
    if old is not None:
        for f in (volume / old).iterdir():
            f.unlink()
        (volume / old).rmdir()


def ask(text: str) -> Exchange:
    return Exchange.of([Message.user(text)], tenant="t", id="x")


async def test_rails_reload_follows_a_config_map_update(tmp_path: Path) -> None:
    kubelet_write(tmp_path, {"guard.yml": CONFIG.format(word="zebra")}, 1)
    holder = RailsHolder(tmp_path, debounce_ms=20)
    first = holder.rails_hash
    assert (await holder.check_input(ask("a zebra"))).block is not None
    await holder.start()
    try:
        await asyncio.sleep(0.2)  # the watcher is armed
        kubelet_write(tmp_path, {"guard.yml": CONFIG.format(word="okapi")}, 2)
        deadline = time.monotonic() + 10
        while holder.rails_hash == first:
            assert time.monotonic() < deadline, "the ConfigMap update was not picked up"
            await asyncio.sleep(0.02)
    finally:
        await holder.aclose()
    verdict = await holder.check_input(ask("an okapi"))
    assert verdict.block is not None and verdict.block.message == "refused by okapi"
    assert (await holder.check_input(ask("a zebra"))).block is None
