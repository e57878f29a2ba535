"""The proxy's memory of active overrides, per tenant, refreshed from the store that all replicas share.

Each replica polls the store's change marker (one cheap query every `GUARD_OVERRIDE_REFRESH_S`) and reloads on
change; the replica that saved a review or revoked an override reloads at once, so its next request sees it.
Texts are embedded with the serving classifier; a vector cached in the store by another classifier version (whose
embedding size may differ) is computed again and cached for the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import Engine

from guard import metrics
from guard.corrections.index import OverrideIndex
from guard.pipeline import CorrectionMatch, TriageResult
from guard.store.overrides import Override, active_overrides, override_marker, save_embeddings
from guard.taxonomy import REFUSAL, labels_over

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
    ) -> None:
        self.engine = engine
        self.embed = embed
        self.version = version
        self.threshold = threshold
        self.refresh_s = refresh_s
        self.max_per_tenant = max_per_tenant
        self._scopes: dict[str, Scope] = {}
        self._marker: tuple[int, datetime | None] | None = None
        self._vectors: dict[int, np.ndarray] = {}  # by override id, for this classifier version
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # Serving ----------------------------------------------------------------------------------------------
    def correct(self, tenant: str, triage: TriageResult) -> tuple[TriageResult, CorrectionMatch] | None:
        scope = self._scopes.get(tenant)
        if scope is None or triage.embedding is None:
            return None
        hit = scope.index.nearest(triage.embedding)
        if hit is None:
            return None
        row, similarity = hit
        o = scope.overrides[row]
        scores = dict(triage.scores)
        scores.update({k: v for k, v in o.scores.items() if k in scores and k != REFUSAL})
        thresholds = triage.thresholds
        labels = labels_over(scores, thresholds, scores)
        metrics.REVIEW_OVERRIDES.labels(o.label).inc()
        match = CorrectionMatch(o.id, o.review_id, o.exchange_id, o.label, similarity, triage.labels)
        return TriageResult(scores, labels, triage.embedding, triage.device, thresholds), match

    @property
    def active(self) -> int:
        return sum(len(s.overrides) for s in self._scopes.values())

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
            self._scopes = await asyncio.to_thread(self._build, rows)
            self._marker = marker
            metrics.REVIEW_OVERRIDES_ACTIVE.set(self.active)

    def _build(self, rows: list[Override]) -> dict[str, Scope]:
        self._vectors = {o.id: v for o in rows if (v := self._vector(o)) is not None}
        missing = [o for o in rows if o.id not in self._vectors]
        if missing:
            fresh = self.embed([o.text for o in missing])
            self._vectors.update({o.id: fresh[i] for i, o in enumerate(missing)})
            save_embeddings(
                self.engine, {o.id: fresh[i].astype(np.float32).tobytes() for i, o in enumerate(missing)}, self.version
            )
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
            vectors = np.stack([self._vectors[o.id] for o in items])
            scopes[tenant] = Scope(OverrideIndex(vectors, self.threshold), items)
        return scopes

    def _vector(self, o: Override) -> np.ndarray | None:
        known = self._vectors.get(o.id)
        if known is not None:
            return known
        if o.embedding is None or o.embedding_version != self.version:
            return None
        return np.frombuffer(o.embedding, dtype=np.float32)
