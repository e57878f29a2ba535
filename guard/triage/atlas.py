"""The harm atlas: sentence vectors of the harmful texts a classifier was trained on, shipped beside it.

A reviewer's `false_positive` override should reach the close paraphrases of the reviewed text and nothing a
known harmful text sits as close to. The tenant's own reviewed harmful texts mark some of that ground
(`guard.corrections.radius`); the atlas marks the rest: the harmful and attack rows of the classifier's training
and calibration data, embedded by the served encoder, so a benign override stops short of the nearest one.

Stored as int8 rows, each scaled to fill the int8 range (`harm_atlas.npz`: `vectors`, column-major because it
deflates better, and `encoder`): a 14,000-row atlas is 5 MB, and the rounding moves a cosine by less than 0.005,
inside the radius margin. Rows are renormalised on load, so no per-row scale is stored (atlases written with a
`scales` array, or row-major, load the same).
Only numpy here: the serving path loads it; `finetune.triage.atlas` builds it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger("guard.triage")

HARM_ATLAS = "harm_atlas.npz"
_BLOCK = 512  # query rows per product: 512 x 14,000 floats is 28 MB


def quantize(unit: np.ndarray) -> np.ndarray:
    """int8 rows for unit vectors [N, D], each scaled to fill the int8 range (`load` renormalises them)."""
    scales = np.maximum(np.abs(unit).max(axis=1), 1e-12) / 127.0
    return np.round(unit / scales[:, None]).astype(np.int8)


def load(path: Path, width: int) -> np.ndarray | None:
    """Unit vectors [N, width] as float32, or None when the file is absent or does not fit this encoder."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            vectors = data["vectors"]
    except (OSError, ValueError, KeyError) as exc:
        log.warning("triage: harm atlas %s unreadable (%s); overrides keep the global threshold", path, exc)
        return None
    if vectors.ndim != 2 or vectors.shape[1] != width:
        log.warning("triage: harm atlas %s has %s vectors, the encoder %d-wide; ignored", path, vectors.shape, width)
        return None
    unit = vectors.astype(np.float32, order="C")  # rows contiguous for `nearest`, however the file stored them
    return unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)


def nearest(atlas: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Per row of `vectors` (unit, [M, D]): the cosine of the closest atlas vector."""
    out = np.full(len(vectors), -1.0, dtype=np.float32)
    if not len(atlas):
        return out
    for start in range(0, len(vectors), _BLOCK):
        out[start : start + _BLOCK] = (vectors[start : start + _BLOCK] @ atlas.T).max(axis=1)
    return out
