"""Model directory: `ROOT/NAME/VERSION/` folders and a `ROOT/NAME/current` pointer file per model.

The pointer is replaced atomically (write + rename), so a reader sees the old or the new version,
never a half-written one. Promotion and rollback (finetune.registry) build on this.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ModelStoreError(Exception):
    pass


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    path: Path


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _check(self, value: str, what: str) -> str:
        if not _NAME.match(value):
            raise ModelStoreError(f"invalid {what} {value!r}: use letters, digits, '.', '_' or '-'")
        return value

    def version_dir(self, name: str, version: str) -> Path:
        return self.root / self._check(name, "model name") / self._check(version, "version")

    def versions(self, name: str) -> list[str]:
        base = self.root / self._check(name, "model name")
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "current").is_file())

    def current(self, name: str) -> ModelVersion | None:
        pointer = self.root / self._check(name, "model name") / "current"
        try:
            data = json.loads(pointer.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ModelStoreError(f"{pointer}: unreadable pointer ({exc})") from None
        version = data.get("version")
        path = self.version_dir(name, version)
        if not path.is_dir():
            raise ModelStoreError(f"{pointer} points at {version!r}, but {path} does not exist")
        return ModelVersion(name, version, path)

    def set_current(self, name: str, version: str, **extra: object) -> ModelVersion:
        path = self.version_dir(name, version)
        if not path.is_dir():
            raise ModelStoreError(f"no version {version!r} of model {name!r} under {self.root}")
        pointer = path.parent / "current"
        tmp = pointer.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": version, **extra}))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, pointer)
        return ModelVersion(name, version, path)
