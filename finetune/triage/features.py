"""Sentence embeddings of the training rows, computed once by the served (int8 ONNX) encoder and cached.

The heads of the frozen recipe are trained and calibrated on exactly what serving computes: each text's windows are
embedded by the built int8 model, so a retrain, a recalibration or an adaptation (`guard triage adapt`) re-embeds
only the texts it has not seen before. The cache is keyed by the encoder's build hash and the text.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from guard.triage.runtime import TriageModel


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


class WindowCache:
    """text -> embeddings of its windows [W, D] (first window first), persisted as one .npz per encoder."""

    def __init__(self, model: TriageModel, encoder_id: str, cache_dir: Path | None) -> None:
        self.model = model
        self.path = cache_dir / f"windows-{encoder_id}.npz" if cache_dir is not None else None
        self._store: dict[str, np.ndarray] = {}
        if self.path is not None and self.path.is_file():
            with np.load(self.path) as data:
                keys, ends, emb = data["keys"], data["ends"], data["emb"]
            starts = np.concatenate([[0], ends[:-1]])
            self._store = {str(k): emb[a:b] for k, a, b in zip(keys, starts, ends, strict=True)}

    def windows(self, texts: Sequence[str], *, first_only: bool = False, batch: int = 2048) -> list[np.ndarray]:
        """Each text's window embeddings; `first_only`: its first window alone (what training rows teach)."""
        prefix = "1:" if first_only else ""
        missing = sorted({t for t in texts if prefix + text_key(t) not in self._store})
        for start in range(0, len(missing), batch):
            part = missing[start : start + batch]
            owners, emb = self.model.window_embeddings(part, first_only=first_only)
            for i, text in enumerate(part):
                self._store[prefix + text_key(text)] = emb[owners == i].astype(np.float16)
            self.save()  # per batch: an interrupted run keeps what it embedded
        return [self._store[prefix + text_key(t)].astype(np.float32) for t in texts]

    def first(self, texts: Sequence[str]) -> np.ndarray:
        return np.concatenate(self.windows(texts, first_only=True))

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Write beside, then rename: an interrupted save never leaves a truncated cache behind.
        keys = list(self._store)
        ends = np.cumsum([len(self._store[k]) for k in keys])
        emb = np.concatenate([self._store[k] for k in keys]) if keys else np.zeros((0, 0), np.float16)
        with tempfile.NamedTemporaryFile(dir=self.path.parent, suffix=".npz", delete=False) as tmp:
            np.savez(tmp, keys=np.array(keys), ends=ends, emb=emb)
        Path(tmp.name).replace(self.path)
