"""Step 5, registry: model versions with metadata on top of `guard.modelstore.ModelStore`.

A version folder `ROOT/NAME/VERSION/` holds the merged transformers model (loadable with
`AutoModelForCausalLM.from_pretrained(folder)`), `adapter/` (the LoRA adapter, for export) and `meta.json`
(base, data manifest hash, config, metrics, gate verdict). `NAME/history.json` lists promotions in order;
promote and rollback move the atomic `current` pointer, and the local backend hot-swaps on that change.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from guard.modelstore import ModelStore, ModelStoreError, ModelVersion


class RegistryError(ModelStoreError):
    pass


def _now() -> str:
    return datetime.now(UTC).isoformat()


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


class Registry:
    def __init__(self, root: Path, name: str) -> None:
        self.store = ModelStore(root)
        self.name = name

    def _history_path(self) -> Path:
        return self.store.root / self.name / "history.json"

    def history(self) -> list[dict[str, Any]]:
        try:
            return json.loads(self._history_path().read_text())
        except FileNotFoundError:
            return []

    def meta(self, version: str) -> dict[str, Any]:
        try:
            return json.loads((self.store.version_dir(self.name, version) / "meta.json").read_text())
        except FileNotFoundError:
            return {}

    def current(self) -> ModelVersion | None:
        return self.store.current(self.name)

    def new_version(self) -> str:
        return datetime.now(UTC).strftime("ft-%Y%m%dT%H%M%S%fZ")

    def add(self, merged_dir: Path, adapter_dir: Path | None, meta: dict[str, Any], version: str | None = None) -> str:
        """Copy a trained candidate in as a new (not yet promoted) version; the folder appears atomically."""
        version = version or self.new_version()
        final = self.store.version_dir(self.name, version)
        if final.exists():
            raise RegistryError(f"version {version!r} of {self.name!r} already exists")
        staging = final.with_name(f".{version}.staging")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(merged_dir, staging)
        if adapter_dir is not None and Path(adapter_dir).is_dir():
            shutil.copytree(adapter_dir, staging / "adapter")
        write_json(staging / "meta.json", {"name": self.name, "version": version, "created_at": _now(), **meta})
        os.replace(staging, final)  # readers never see a half-copied version
        return version

    def update_meta(self, version: str, **fields: Any) -> None:
        path = self.store.version_dir(self.name, version) / "meta.json"
        write_json(path, {**self.meta(version), **fields})

    def promote(self, version: str) -> ModelVersion:
        prev = self.current()
        return self._move(version, "promote", prev.version if prev else None)

    def _move(self, version: str, action: str, previous: str | None) -> ModelVersion:
        mv = self.store.set_current(self.name, version, promoted_at=_now())
        hist = self.history()
        hist.append({"version": version, "previous": previous, "at": _now(), "action": action})
        write_json(self._history_path(), hist)
        return mv

    def rollback(self) -> ModelVersion:
        """Back to the version promoted before the current one; the history keeps every move.

        The restored version inherits its own predecessor, so a second rollback walks further back.
        """
        cur = self.current()
        if cur is None:
            raise RegistryError(f"model {self.name!r} has no current version to roll back from")
        hist = self.history()
        target = next((h["previous"] for h in reversed(hist) if h["version"] == cur.version), None)
        if target is None:
            raise RegistryError(f"{self.name} {cur.version} has no earlier promoted version")
        before = next((h["previous"] for h in reversed(hist) if h["version"] == target), None)
        return self._move(target, f"rollback from {cur.version}", before)

    def export(self, version: str, dest: Path, what: str = "adapter") -> Path:
        """Copy the LoRA adapter (vLLM `--lora-modules name=DEST`) or the merged weights for another stack."""
        src = self.store.version_dir(self.name, version)
        if what == "adapter":
            src = src / "adapter"
            if not src.is_dir():
                raise RegistryError(f"{self.name} {version} has no adapter (trained without LoRA?)")
            shutil.copytree(src, dest, dirs_exist_ok=True)
        elif what == "merged":
            shutil.copytree(src, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("adapter"))
        else:
            raise RegistryError(f"unknown export kind {what!r}: use 'adapter' or 'merged'")
        return Path(dest)
