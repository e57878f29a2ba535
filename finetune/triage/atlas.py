"""Build the harm atlas (`guard.triage.atlas`) of an artifact: its training split's harmful rows, embedded by the
encoder as it serves (int8 ONNX, through the embedding cache that refits share).

The rows are every text of the `train` and `calib` roles with a harmful or attack label: what the classifier was
taught and calibrated on. Held-out (`test`) rows stay out, so what the overrides are measured on never shaped them.
Each row's vector is its first window's, as the heads were trained on (most rows fit one window).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from finetune.triage.model import encoder_state
from finetune.triage.refit import embed, encoder_id
from guard.taxonomy import ATTACKS, HARMFUL
from guard.triage.artifact import ARTIFACT_CONFIG
from guard.triage.atlas import HARM_ATLAS, quantize


def atlas_texts(split: dict[str, list[dict]]) -> list[str]:
    harm = set(HARMFUL + ATTACKS)
    return sorted({r["text"] for role in ("train", "calib") for r in split[role] if harm & set(r["labels"])})


def artifact_encoder(art_dir: Path) -> str:
    config = json.loads((art_dir / ARTIFACT_CONFIG).read_text())
    return encoder_id(encoder_state(art_dir), config["max_len"], config["stride"])


def build_atlas(art_dir: Path, split: dict[str, list[dict]], *, cache_dir: Path | None, threads: int) -> Path:
    """Write `art_dir/harm_atlas.npz`; returns its path."""
    texts = atlas_texts(split)
    rows = [{"text": t, "labels": [], "kind": "prompt"} for t in texts]
    vectors = embed(art_dir, rows, {}, cache_dir=cache_dir, threads=threads).first.astype(np.float32)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    q = quantize(unit)
    path = art_dir / HARM_ATLAS
    with tempfile.NamedTemporaryFile(dir=art_dir, suffix=".npz", delete=False) as tmp:
        # Column-major: each dimension's values sit together and deflate 4.5 % smaller (the shipped atlas
        # 5.25 -> 5.02 MB); `load` reads back the same [N, D] array.
        np.savez_compressed(tmp, vectors=np.asfortranarray(q), encoder=np.array(artifact_encoder(art_dir)))
    Path(tmp.name).chmod(0o644)  # a temporary file is private; the atlas ships with the artifact
    Path(tmp.name).replace(path)
    return path


def atlas_encoder(path: Path) -> str | None:
    """The encoder an atlas file was embedded by, or None when unreadable."""
    try:
        with np.load(path) as data:
            return str(data["encoder"])
    except (OSError, ValueError, KeyError):
        return None
