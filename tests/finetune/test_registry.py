from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from finetune.registry import Registry, RegistryError
from guard.modelstore import ModelStore


def fake_candidate(root: Path, tag: str) -> tuple[Path, Path]:
    merged, adapter = root / tag / "merged", root / tag / "adapter"
    merged.mkdir(parents=True)
    adapter.mkdir(parents=True)
    (merged / "config.json").write_text(json.dumps({"tag": tag}))
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 4}))
    return merged, adapter


def registry_with(tmp_path: Path, n: int) -> tuple[Registry, list[str]]:
    reg = Registry(tmp_path / "models", "m")
    versions = [
        reg.add(*fake_candidate(tmp_path / "c", f"v{i}"), {"metrics": {"i": i}}, version=f"v{i}") for i in range(n)
    ]
    return reg, versions


def test_promote_and_rollback_move_the_pointer_and_keep_the_history(tmp_path: Path) -> None:
    reg, (v0, v1, v2) = registry_with(tmp_path, 3)
    assert reg.current() is None and reg.meta(v1)["metrics"] == {"i": 1}
    for v in (v0, v1, v2):
        reg.promote(v)
    assert reg.current().version == v2
    assert reg.rollback().version == v1
    assert reg.rollback().version == v0  # a second rollback walks further back, it does not toggle
    with pytest.raises(RegistryError, match="no earlier promoted version"):
        reg.rollback()
    assert [h["action"] for h in reg.history()] == ["promote"] * 3 + [f"rollback from {v2}", f"rollback from {v1}"]
    assert ModelStore(tmp_path / "models").current("m").version == v0


def test_a_version_folder_appears_whole_and_duplicates_are_refused(tmp_path: Path) -> None:
    reg, (v0,) = registry_with(tmp_path, 1)
    folder = reg.store.version_dir("m", v0)
    assert json.loads((folder / "config.json").read_text()) == {"tag": "v0"}
    assert (folder / "adapter" / "adapter_config.json").is_file() and (folder / "meta.json").is_file()
    assert not any(p.name.startswith(".") for p in folder.parent.iterdir())  # no staging left behind
    with pytest.raises(RegistryError, match="already exists"):
        reg.add(*fake_candidate(tmp_path / "d", "again"), {}, version=v0)


def test_readers_never_see_a_broken_pointer_while_versions_are_promoted(tmp_path: Path) -> None:
    reg, versions = registry_with(tmp_path, 2)
    reg.promote(versions[0])
    errors: list[BaseException] = []
    seen: set[str] = set()
    stop = threading.Event()

    def reader() -> None:
        store = ModelStore(tmp_path / "models")
        while not stop.is_set():
            try:
                seen.add(store.current("m").version)
            except BaseException as exc:  # any failure to read the pointer is the bug under test
                errors.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    for i in range(200):
        reg.promote(versions[i % 2])
    stop.set()
    t.join()
    assert errors == [] and seen == set(versions)


def test_export_writes_the_adapter_or_the_merged_weights(tmp_path: Path) -> None:
    reg, (v0,) = registry_with(tmp_path, 1)
    a = reg.export(v0, tmp_path / "out-adapter", "adapter")
    assert (a / "adapter_config.json").is_file()
    m = reg.export(v0, tmp_path / "out-merged", "merged")
    assert (m / "config.json").is_file() and not (m / "adapter").exists()
    shutil.rmtree(reg.store.version_dir("m", v0) / "adapter")
    with pytest.raises(RegistryError, match="no adapter"):
        reg.export(v0, tmp_path / "x", "adapter")


async def test_the_local_backend_hot_swaps_to_a_promoted_version_and_back_on_rollback(
    tiny_lm: Path, tmp_path: Path
) -> None:
    from guard.backends.local import LocalModel

    reg = Registry(tmp_path / "models", "m")
    v0 = reg.add(tiny_lm, None, {}, version="v0")
    v1 = reg.add(tiny_lm, None, {}, version="v1")
    reg.promote(v0)
    backend = LocalModel(reg.store, "m", max_new_tokens=4, poll_interval_s=0.0)
    await backend.start()
    try:
        assert backend.version == v0
        reg.promote(v1)
        await backend.wait_for_swap()
        assert backend.version == v1
        reg.rollback()
        await backend.wait_for_swap()
        assert backend.version == v0
    finally:
        await backend.aclose()
