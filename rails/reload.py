"""Hot reload: watch a rails directory, validate changes, swap the engine atomically.

An invalid change is rejected (logged, counted); the engine that was serving keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from guard import metrics
from guard.pipeline import Exchange, InputVerdict, OutputVerdict, Selection, StreamGuard, TriageResult
from rails.compiled import Encoder, TextScorer
from rails.config import POLICY_FILE, RailsConfigError
from rails.engine import RailsEngine
from rails.floor import change_errors

if TYPE_CHECKING:
    from rails.nemo_llm import TaskModels

log = logging.getLogger(__name__)


class RailsHolder:
    """Holds the current engine; the pipeline calls it exactly like a `RailsEngine`."""

    def __init__(
        self,
        rails_dir: Path,
        *,
        scorer: TextScorer | None = None,
        encoder: Encoder | None = None,
        watch: bool = True,
        debounce_ms: int = 200,
        on_swap: Callable[[RailsEngine], None] | None = None,
        models: TaskModels | None = None,
    ) -> None:
        self.rails_dir = Path(rails_dir)
        self.scorer, self.encoder, self.models = scorer, encoder, models
        self.watch, self.debounce_ms, self.on_swap = watch, debounce_ms, on_swap
        self.engine = RailsEngine.load(self.rails_dir, scorer=scorer, encoder=encoder, models=models)  # errors raise
        self._previous: RailsEngine | None = None
        self.last_error: str | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def rails_hash(self) -> str:
        return self.engine.rails_hash

    async def start(self) -> None:
        if self.watch and self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._watch(), name="rails-reload")

    async def aclose(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self) -> None:
        from watchfiles import awatch

        async for _changes in awatch(self.rails_dir, stop_event=self._stop, debounce=self.debounce_ms, recursive=True):
            await self.reload()

    async def reload(self) -> bool:
        """Validate and swap in the directory's current state. False when it was rejected."""
        try:
            engine = await asyncio.to_thread(
                RailsEngine.load, self.rails_dir, scorer=self.scorer, encoder=self.encoder, models=self.models
            )
            lost = change_errors(self.rails_dir / POLICY_FILE, self.engine.dir.policy, engine.dir.policy)
            if lost:
                raise RailsConfigError("\n".join(lost))
        except (RailsConfigError, OSError, ValueError) as exc:
            self.last_error = str(exc)
            metrics.CONFIG_RELOADS.labels("rejected").inc()
            log.error("rails reload rejected, still serving %s:\n%s", self.engine.rails_hash, exc)
            return False
        self.last_error = None
        if engine.rails_hash == self.engine.rails_hash:
            metrics.CONFIG_RELOADS.labels("unchanged").inc()
            return True
        self._previous, self.engine = self.engine, engine  # one reference assignment: atomic for readers
        metrics.CONFIG_RELOADS.labels("ok").inc()
        log.info("rails reloaded: %s -> %s", self._previous.rails_hash, engine.rails_hash)
        if self.on_swap is not None:
            self.on_swap(engine)
        return True

    def _for(self, ex: Exchange) -> RailsEngine:
        # A request that started on the previous config finishes on it (input and output rails agree).
        prev = self._previous
        if prev is not None and ex.rails_hash == prev.rails_hash and ex.rails_hash != self.engine.rails_hash:
            return prev
        return self.engine

    def tenant_profile(self, tenant: str) -> str | None:
        return self.engine.tenant_profile(tenant)

    def resolve_profile(self, exchange: Exchange) -> str | None:
        return self._for(exchange).resolve_profile(exchange)

    def select(self, exchange: Exchange) -> Selection:
        return self.engine.select(exchange)  # the pipeline keeps its rails hash: later stages run on that engine

    def prescreen(self, exchange: Exchange) -> InputVerdict:
        return self._for(exchange).prescreen(exchange)

    async def check_input(self, exchange: Exchange, early: InputVerdict | None = None) -> InputVerdict:
        return await self._for(exchange).check_input(exchange, early)

    def wants_scores(self, exchange: Exchange) -> bool:
        return self._for(exchange).wants_scores(exchange)

    async def check_output(
        self, exchange: Exchange, text: str, scores: TriageResult | None = None, *, tool_calls: bool = False
    ) -> OutputVerdict:
        return await self._for(exchange).check_output(exchange, text, scores, tool_calls=tool_calls)

    def scoring_failed(self, exchange: Exchange, exc: Exception) -> OutputVerdict:
        return self._for(exchange).scoring_failed(exchange, exc)

    def stream_guard(self, exchange: Exchange) -> StreamGuard:
        return self._for(exchange).stream_guard(exchange)

    def relays(self, exchange: Exchange) -> bool:
        return self._for(exchange).relays(exchange)
