"""Triage classifier versions in the model registry (`finetune.registry.Registry`, model name `triage`).

A version folder holds what the proxy loads (the int8 ONNX model, tokenizer and runtime `triage.json`, whose
`version` is the registry's version name, so responses and records name it), the heads artifact it was built from
(`artifact/`, what the next adaptation starts from) and `meta.json` (base version, data hash, gate metrics and
verdict). Promotion moves the atomic `current` pointer; the proxy swaps models on that move.

The shipped build has no folder until the first promotion registers it (`shipped-<build hash>`), so a rollback
can always return to it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from finetune.registry import Registry, RegistryError, write_json
from guard.modelstore import ModelVersion
from guard.triage.artifact import ARTIFACT_DIR, MODEL_INT8, RUNTIME_CONFIG, TOKENIZER
from guard.triage.atlas import HARM_ATLAS
from guard.triage.versions import NAME

ARTIFACT = "artifact"
WATERMARK = "adapt-watermark.json"


def registry(models_root: Path) -> Registry:
    return Registry(models_root, NAME)


def new_version() -> str:
    return datetime.now(UTC).strftime("triage-%Y%m%dT%H%M%S%fZ")


def current_artifact(reg: Registry) -> Path:
    """The heads artifact of the serving version: the current one's, or the shipped artifact before any."""
    current = reg.current()
    return current.path / ARTIFACT if current is not None else ARTIFACT_DIR


def current_name(reg: Registry, shipped_build: Path) -> str:
    current = reg.current()
    if current is not None:
        return current.version
    return f"shipped-{_runtime(shipped_build).get('source_hash', 'unknown')}"


def add_built(reg: Registry, built: Path, artifact: Path, meta: dict[str, Any], version: str, *, rename: bool) -> str:
    """Register a built model (`guard triage build` output) with its artifact; `rename` makes the runtime
    config's version the registry name (so the proxy reports it)."""
    with tempfile.TemporaryDirectory(prefix="triage-version-") as tmp:
        work = Path(tmp) / "v"
        work.mkdir()
        for name in (MODEL_INT8, TOKENIZER):  # the fp32 export is not served: kept out of every version
            shutil.copyfile(built / name, work / name)
        if (built / HARM_ATLAS).is_file():
            shutil.copyfile(built / HARM_ATLAS, work / HARM_ATLAS)
        runtime = _runtime(built)
        if rename:
            runtime["version"] = version
        (work / RUNTIME_CONFIG).write_text(json.dumps(runtime, indent=2) + "\n")
        shutil.copytree(artifact, work / ARTIFACT, ignore=shutil.ignore_patterns("*.onnx"))
        return reg.add(work, None, meta, version=version)


def register_candidate(reg: Registry, artifact: Path, meta: dict[str, Any]) -> str:
    """Build the candidate artifact to ONNX and register it (not promoted)."""
    from finetune.triage.export import build

    version = new_version()
    with tempfile.TemporaryDirectory(prefix="triage-build-") as tmp:
        build(artifact, Path(tmp), force=True)
        return add_built(reg, Path(tmp), artifact, meta, version, rename=True)


def promote(reg: Registry, version: str, shipped_build: Path) -> ModelVersion:
    """Point `current` at `version`; the first promotion registers the shipped build first, to roll back to."""
    if not reg.store.version_dir(reg.name, version).is_dir():
        raise RegistryError(f"no triage version {version!r} (see `guard triage history`)")
    if reg.current() is None:
        base = current_name(reg, shipped_build)
        if not reg.store.version_dir(reg.name, base).is_dir():
            if not (shipped_build / RUNTIME_CONFIG).is_file():
                raise RegistryError(f"no built triage model at {shipped_build}: run `guard triage build` first")
            add_built(reg, shipped_build, ARTIFACT_DIR, {"shipped": True}, base, rename=False)
        reg.promote(base)
    return reg.promote(version)


def watermark(reg: Registry) -> int:
    """The newest override id the last adaptation saw (0: none yet)."""
    try:
        return int(json.loads((reg.store.root / reg.name / WATERMARK).read_text())["override_id"])
    except FileNotFoundError:
        return 0


def commit_watermark(reg: Registry, override_id: int, **extra: Any) -> None:
    path = reg.store.root / reg.name / WATERMARK
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"override_id": override_id, "at": datetime.now(UTC).isoformat(), **extra})


def _runtime(built: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((built / RUNTIME_CONFIG).read_text()))
    except FileNotFoundError:
        return {}
