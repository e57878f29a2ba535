"""The proxy's memory of active overrides, per tenant, refreshed from the store that all replicas share.

Each replica polls the store's change marker (one cheap query every `GUARD_OVERRIDE_REFRESH_S`) and reloads on
change; the replica that saved a review or revoked an override reloads at once, so its next request sees it.
Texts are embedded with the serving classifier; a vector cached in the store by another classifier version (whose
embedding size may differ) is computed again and cached for the others.

When the proxy swaps classifier versions (`TriageStage.on_swap`), `retarget` embeds the overrides with the new
version before it serves. A request is matched only against vectors of the version that scored it: requests still
running on the previous version keep its vectors until the next reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine

from guard import metrics
from guard.corrections.index import OverrideIndex
from guard.corrections.radius import radii
from guard.pipeline import CorrectionMatch, TriageResult
from guard.store.overrides import Override, active_overrides, override_marker, save_embeddings
from guard.taxonomy import INPUT_LABELS, REFUSAL, labels_over
from guard.triage.atlas import nearest

log = logging.getLogger("guard.corrections")

Embed = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True, slots=True)
class Scope:
    index: OverrideIndex
    overrides: list[Override]


class CorrectionMemory:
    def __init__(
        self,
        engine: Engine,
        embed: Embed,
        version: str,
        *,
        threshold: float,
        refresh_s: float,
        max_per_tenant: int,
        atlas: np.ndarray | None = None,
        reach: float | None = None,
    ) -> None:
        self.engine = engine
        self.embed = embed
        self.version = version
        self.threshold = threshold
        self.atlas = atlas  # the serving classifier's harm atlas (`guard.triage.atlas`), None without one
        self.reach = reach
        self.refresh_s = refresh_s
        self.max_per_tenant = max_per_tenant
        self._scopes: dict[str, dict[str, Scope]] = {}  # classifier version -> tenant -> scope
        self._marker: tuple[int, datetime | None] | None = None
        self._vectors: dict[int, np.ndarray] = {}  # by override id, for this classifier version
        self._atlas_near: dict[int, float] = {}  # by override id: cosine to the nearest atlas text, this version
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # Serving ----------------------------------------------------------------------------------------------
    def correct(self, tenant: str, triage: TriageResult) -> tuple[TriageResult, CorrectionMatch] | None:
        scope = self._scopes.get(triage.version or self.version, {}).get(tenant)
        if scope is None or triage.embedding is None:
            return None
        hit = scope.index.nearest(triage.embedding)
        if hit is None:
            return None
        row, similarity = hit
        o = scope.overrides[row]
        if o.label == "false_positive" and not could_act(triage):
            return None  # nothing to lift: a match would only put an override in the record and the headers
        scores = dict(triage.scores)
        scores.update({k: v for k, v in o.scores.items() if k in scores and k != REFUSAL})
        thresholds = triage.thresholds
        labels = labels_over(scores, thresholds, scores)
        metrics.REVIEW_OVERRIDES.labels(o.label).inc()
        match = CorrectionMatch(o.id, o.review_id, o.exchange_id, o.label, similarity, triage.labels)
        return replace(triage, scores=scores, labels=labels), match

    def reaches(self) -> dict[int, float]:
        """Each served override's radius (the cosine a request needs), by override id, for the serving version."""
        return {
            o.id: float(r)
            for scope in self._scopes.get(self.version, {}).values()
            for o, r in zip(scope.overrides, scope.index.radii, strict=True)
        }

    @property
    def active(self) -> int:
        return sum(len(s.overrides) for s in self._scopes.get(self.version, {}).values())

    # Refreshing -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await self.refresh()
        except Exception as exc:  # the database may be down at startup: serve, and catch up once it answers
            log.warning("overrides: not loaded at startup (%s); retrying every %g s", exc, self.refresh_s)
        self._task = asyncio.create_task(self._poll(), name="override-refresh")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("overrides: refresh failed (%s); serving the ones loaded before", exc)

    async def refresh(self, *, force: bool = False) -> None:
        """Reload when the store's marker moved (always with `force`)."""
        async with self._lock:
            marker = await asyncio.to_thread(override_marker, self.engine)
            if marker == self._marker and not force:
                return
            rows = await asyncio.to_thread(active_overrides, self.engine)
            scopes, self._vectors = await asyncio.to_thread(
                self._build, rows, self.version, self.embed, self._vectors, self.atlas, self._atlas_near
            )
            self._scopes = {self.version: scopes}
            self._marker = marker
            metrics.REVIEW_OVERRIDES_ACTIVE.set(self.active)

    async def retarget(self, model: Any) -> None:
        """Embed the active overrides with `model` (a `TriageModel` about to serve) and serve its vectors for its
        requests; the current version's stay for requests still running on it."""
        async with self._lock:
            atlas = getattr(model, "harm_atlas", None)
            near: dict[int, float] = {}
            try:
                marker = await asyncio.to_thread(override_marker, self.engine)
                rows = await asyncio.to_thread(active_overrides, self.engine)
                scopes, vectors = await asyncio.to_thread(
                    self._build, rows, model.version, model.embed, {}, atlas, near
                )
            except Exception as exc:  # the store is down: the swap goes ahead, the next poll embeds
                log.warning("overrides: not embedded for classifier %s yet (%s)", model.version, exc)
                self.version, self._vectors, self._marker = model.version, {}, None
                self.atlas, self._atlas_near = atlas, near
                return
            self._scopes = {self.version: self._scopes.get(self.version, {}), model.version: scopes}
            self.version, self._vectors, self._marker = model.version, vectors, marker
            self.atlas, self._atlas_near = atlas, near
            metrics.REVIEW_OVERRIDES_ACTIVE.set(self.active)

    def _build(
        self,
        rows: list[Override],
        version: str,
        embed: Embed,
        known: dict[int, np.ndarray],
        atlas: np.ndarray | None,
        atlas_near: dict[int, float],
    ) -> tuple[dict[str, Scope], dict[int, np.ndarray]]:
        """Per-tenant indexes of `rows` for classifier `version`, and the vectors by override id. `atlas_near`
        (cosines to the atlas by override id) is filled in place: each override is compared with it once."""
        vectors = {o.id: v for o in rows if (v := _vector(o, version, known)) is not None}
        missing = [o for o in rows if o.id not in vectors]
        if missing:
            fresh = embed([o.text for o in missing])
            vectors.update({o.id: fresh[i] for i, o in enumerate(missing)})
            save_embeddings(
                self.engine, {o.id: fresh[i].astype(np.float32).tobytes() for i, o in enumerate(missing)}, version
            )
        if atlas is not None:
            fresh_ids = [o.id for o in rows if o.label == "false_positive" and o.id not in atlas_near]
            if fresh_ids:
                found = nearest(atlas, np.stack([vectors[i] for i in fresh_ids]))
                atlas_near.update(zip(fresh_ids, found.tolist(), strict=True))
        by_tenant: dict[str, list[Override]] = {}
        for o in rows:
            by_tenant.setdefault(o.tenant, []).append(o)
        scopes = {}
        for tenant, items in by_tenant.items():
            if len(items) > self.max_per_tenant:
                log.warning(
                    "overrides: tenant %s has %d active, serving the newest %d", tenant, len(items), self.max_per_tenant
                )
                items = items[-self.max_per_tenant :]
            stacked = np.stack([vectors[o.id] for o in items])
            near = None if atlas is None else np.array([atlas_near.get(o.id, 1.0) for o in items], np.float32)
            r = radii(stacked, items, self.threshold, reach=self.reach, atlas_near=near)
            scopes[tenant] = Scope(OverrideIndex(stacked, self.threshold, r), items)
        return scopes, vectors


# A rail may act on a label from this share of its threshold (the default rails: caution from 0.8, self-harm from
# 0.5). Under it on every input label, a `false_positive` override would change no decision.
ACTS_FROM = 0.5


def could_act(triage: TriageResult) -> bool:
    return any(
        triage.scores.get(lab, 0.0) >= ACTS_FROM * thr for lab, thr in triage.thresholds.items() if lab in INPUT_LABELS
    )


def _vector(o: Override, version: str, known: dict[int, np.ndarray]) -> np.ndarray | None:
    if o.id in known:
        return known[o.id]
    if o.embedding is None or o.embedding_version != version:
        return None
    return np.frombuffer(o.embedding, dtype=np.float32)
