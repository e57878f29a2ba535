"""Nearest neighbour over the unit sentence vectors of one scope's overrides.

A plain matrix-vector product over 10,000 vectors of 384 floats reads 15 MB per request. Instead each vector is
split into its part in the stored vectors' top principal directions (a small matrix) and the rest, whose length is
kept: by Cauchy-Schwarz, `p·q_p + |r|·|q_r|` bounds the cosine from above, so only rows whose bound reaches the
threshold are compared in full. The answer is exact, not approximate.

Each row may have its own threshold (`radii`: see `radius.py`); a query matches the closest row whose own
threshold it reaches.
"""

from __future__ import annotations

import numpy as np

PROJECTED = 32  # principal directions kept for the bound
FULL_SCAN_BELOW = 1024  # fewer vectors: one full product is as fast as the bound
SVD_SAMPLE = 4096
_SLACK = 1e-4  # float32 rounding in the bound


class OverrideIndex:
    def __init__(self, vectors: np.ndarray, threshold: float, radii: np.ndarray | None = None) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.radii = np.full(len(self.vectors), threshold, np.float32) if radii is None else np.asarray(radii)
        # The pruning bound must admit the row with the lowest radius (a benign override may reach further).
        self.threshold = min(threshold, float(self.radii.min())) if len(self.radii) else threshold
        self.dim = self.vectors.shape[1]
        self.basis: np.ndarray | None = None
        if len(self.vectors) >= FULL_SCAN_BELOW and self.dim > PROJECTED:
            step = max(1, len(self.vectors) // SVD_SAMPLE)
            # Uncentred: dot products, not variance, are what the bound has to capture.
            _, _, vt = np.linalg.svd(self.vectors[::step], full_matrices=False)
            self.basis = np.ascontiguousarray(vt[:PROJECTED].T)
            self.projected = np.ascontiguousarray(self.vectors @ self.basis)
            self.rest = np.sqrt(np.clip(1.0 - np.einsum("ij,ij->i", self.projected, self.projected), 0.0, None))

    def __len__(self) -> int:
        return len(self.vectors)

    def nearest(self, query: np.ndarray) -> tuple[int, float] | None:
        """(row, cosine) of the closest vector at or over the threshold, or None."""
        if query.shape != (self.dim,):
            return None  # a vector of another encoder (the classifier changed): no override can match it
        if self.basis is None:
            return self._closest(np.arange(len(self.vectors)), self.vectors @ query)
        qp = query @ self.basis
        q_rest = float(np.sqrt(max(0.0, 1.0 - float(qp @ qp))))
        bound = self.projected @ qp
        bound += self.rest * q_rest
        rows = np.flatnonzero(bound >= self.threshold - _SLACK)
        if not rows.size:
            return None
        return self._closest(rows, self.vectors[rows] @ query)

    def _closest(self, rows: np.ndarray, sims: np.ndarray) -> tuple[int, float] | None:
        within = sims >= self.radii[rows]
        if not within.any():
            return None
        best = int(np.where(within, sims, -np.inf).argmax())
        return int(rows[best]), float(sims[best])
