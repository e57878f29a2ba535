"""The pipeline's triage stage: conversation -> texts -> micro-batched ONNX model -> `TriageResult`.

What is scored for a request:
- the latest user turn, with the previous turn pair as short context when the latest turn is short (a "yes, do
  it" only means something next to what it answers), formatted as the training data's context;
- every tool/function message (documents, retrieval and tool results) separately, for injections only: a
  retrieved page about weapons is not a harmful request, but an instruction hidden in it is an attack.

Work per request is bounded (`max_windows`, GUARD_TRIAGE_MAX_WINDOWS): a text longer than the budget is scored
on a sample of window-sized segments (its first and last, and evenly spaced ones between), taking each label's
highest score as for the windows of one text; documents are scored newest first until the budget is spent.
The cut is made on characters before tokenizing, so a 1 MB prompt costs no more than a budget-sized one.

Hot swap: with a triage registry (`guard.triage.versions`), its `current` pointer is checked every
GUARD_TRIAGE_POLL_S; a moved pointer's model loads on a worker thread, listeners (the correction memory) prepare
for it, then it replaces the serving model in one assignment on the event loop. Each request takes the model once,
when it starts, and every window of it is scored by that model: requests already running finish on the old one.
A version that fails to load is logged and counted (guard_triage_swaps_total{outcome="failed"}); the old one
keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from guard import metrics
from guard.pipeline import Exchange, TriageResult
from guard.taxonomy import REFUSAL
from guard.triage.batcher import MicroBatcher
from guard.triage.runtime import TriageModel
from guard.triage.versions import NAME, serving_dir, triage_store

if TYPE_CHECKING:
    from guard.domain import Message
    from guard.modelstore import ModelStore
    from guard.settings import Settings

log = logging.getLogger("guard.triage")
SwapListener = Callable[[TriageModel], Awaitable[None]]

CONTEXT_WHEN_SHORTER = 400  # characters in the latest user turn
CONTEXT_CHARS = 300  # per earlier turn
DOCUMENT_ROLES = ("tool", "function")
DOCUMENT_LABELS = ("prompt_injection",)
CHARS_PER_TOKEN = 4  # English averages ~4.2 characters per token in the triage tokenizer
PER_OWNER = 4  # a request's windows per batch: bounds what a concurrent request waits behind


def conversation_text(messages: list[Message]) -> str:
    """The text the classifier sees for a request (same layout as the synthetic context rows)."""
    turns = [m for m in messages if m.role in ("user", "assistant")]
    last_user = next((i for i in range(len(turns) - 1, -1, -1) if turns[i].role == "user"), None)
    if last_user is None:
        return messages[-1].text if messages else ""
    latest = turns[last_user].text
    if len(latest) >= CONTEXT_WHEN_SHORTER or last_user == 0:
        return latest
    context = turns[max(0, last_user - 2) : last_user]
    lines = [f"{m.role}: {m.text[:CONTEXT_CHARS]}" for m in context if m.text]
    return "\n".join([*lines, f"user: {latest}"])


def document_texts(messages: list[Message]) -> list[str]:
    return [m.text for m in messages if m.role in DOCUMENT_ROLES and m.text]


def segments(text: str, budget: int, size: int) -> list[str]:
    """`text` whole when it fits `budget` segments of `size` characters; else `budget` segments of it: the
    first, the last and evenly spaced ones between (an attack at either end is always seen)."""
    if len(text) <= budget * size:
        return [text]
    if budget <= 1:
        return [text[:size]]
    step = (len(text) - size) / (budget - 1)
    return [text[round(i * step) : round(i * step) + size] for i in range(budget)]


@dataclass(frozen=True, slots=True)
class Plan:
    """What one request's classification scores: segments of the conversation text, then of documents."""

    conversation: list[str]
    documents: list[list[str]]  # newest first
    cut: bool  # something was sampled or left out


def plan(messages: list[Message], max_windows: int, size: int) -> Plan:
    """At most `max_windows` segments of `size` characters: the conversation first (half the budget when there
    are documents), then documents newest first with what is left."""
    docs = document_texts(messages)
    conversation = segments(conversation_text(messages), max(1, max_windows // 2) if docs else max_windows, size)
    left = max_windows - _cost(conversation, size)
    documents: list[list[str]] = []
    for doc in reversed(docs):
        if left <= 0:
            break
        parts = segments(doc, left, size)
        documents.append(parts)
        left -= _cost(parts, size)
    cut = len(documents) < len(docs) or any(len(parts) > 1 for parts in [conversation, *documents])
    return Plan(conversation, documents, cut)


def _cost(parts: list[str], size: int) -> int:
    return sum(max(1, -(-len(p) // size)) for p in parts)


class TriageStage:
    def __init__(
        self,
        model: TriageModel,
        *,
        max_batch: int = 32,
        max_wait_ms: float = 2.0,
        max_windows: int = 16,
        workers: int = 2,
        store: ModelStore | None = None,
        poll_s: float = 2.0,
        threads: int = 1,
    ) -> None:
        self.model = model
        self.max_windows = max_windows
        self.store = store
        self.poll_s = poll_s
        self.threads = threads
        self._listeners: list[SwapListener] = []
        self._pointer_mtime: float | None = None  # the first check compares the pointer with what serves
        self._watcher: asyncio.Task[None] | None = None
        self._batcher: MicroBatcher[tuple[str, bool, TriageModel], TriageResult] = MicroBatcher(
            self._run_batch,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            name="triage",
            workers=workers,
            per_owner=PER_OWNER,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> TriageStage:
        store = triage_store(settings)
        model = TriageModel.load(serving_dir(settings), device=settings.triage_device, threads=settings.triage_threads)
        return cls(
            model,
            max_batch=settings.triage_max_batch,
            max_wait_ms=settings.triage_max_wait_ms,
            max_windows=settings.triage_max_windows,
            workers=settings.triage_workers,
            store=store,
            poll_s=settings.triage_poll_s,
            threads=settings.triage_threads,
        )

    @property
    def device(self) -> str:
        return self.model.device

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def harm_atlas(self) -> np.ndarray | None:
        return self.model.harm_atlas

    async def start(self) -> None:
        metrics.TRIAGE_DEVICE.clear()
        metrics.TRIAGE_DEVICE.labels(self.device).set(1)
        await self._batcher.start()
        if self.store is not None:
            self._watcher = asyncio.create_task(self._watch(), name="triage-swap")

    async def aclose(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self._batcher.aclose()

    def on_swap(self, listener: SwapListener) -> None:
        """`listener(new_model)` is awaited before a new version serves (e.g. to embed for it)."""
        self._listeners.append(listener)

    # Hot swap -------------------------------------------------------------------------------------------
    def _mtime(self) -> float | None:
        if self.store is None:
            return None
        try:
            return os.stat(self.store.root / NAME / "current").st_mtime
        except OSError:
            return None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            await self.check_swap()

    async def check_swap(self) -> bool:
        """Swap to the registry's current version when the pointer moved; True when a new version serves."""
        mtime = self._mtime()
        if self.store is None or mtime is None or mtime == self._pointer_mtime:
            return False
        self._pointer_mtime = mtime
        try:
            current = await asyncio.to_thread(self.store.current, NAME)
            if current is None or current.path == self.model.path:
                return False
            model = await asyncio.to_thread(self._load, current.path)
            for listener in self._listeners:
                await listener(model)
        except Exception as exc:  # a broken version must not take the serving one down
            log.warning("triage: not swapping to the registry's current version: %s", exc)
            metrics.TRIAGE_SWAPS.labels("failed").inc()
            return False
        self.model = model  # one assignment: a request that starts from here on uses it
        metrics.TRIAGE_SWAPS.labels("ok").inc()
        log.info("triage: now serving %s (%s)", model.version, current.path)
        return True

    def _load(self, path: Path) -> TriageModel:
        return TriageModel.load(path, device=self.model.device, threads=self.threads)

    # Scoring --------------------------------------------------------------------------------------------
    async def classify(self, exchange: Exchange) -> TriageResult:
        model = self.model  # this request's model, whatever is promoted meanwhile
        work = plan(exchange.messages, self.max_windows, model.max_len * CHARS_PER_TOKEN)
        if work.cut:
            metrics.TRIAGE_SAMPLED.inc()
        owner = object()  # this request's turn in the batcher
        parts = [*work.conversation, *(p for doc in work.documents for p in doc)]
        scored = await asyncio.gather(*(self._batcher.submit((p, False, model), owner) for p in parts))
        main = _merge(model, scored[: len(work.conversation)], output=False)
        rest = scored[len(work.conversation) :]
        docs = []
        for doc in work.documents:
            docs.append(_merge(model, rest[: len(doc)], output=False))
            rest = rest[len(doc) :]
        result = _merge_documents(model, main, docs)
        _count(result)
        return result

    async def score_text(self, text: str) -> TriageResult:
        """Harm and refusal scores for a model answer; "refusal" is in `labels` when over its threshold."""
        model = self.model
        owner = object()
        parts = segments(text, self.max_windows, model.max_len * CHARS_PER_TOKEN)
        scored = await asyncio.gather(*(self._batcher.submit((p, True, model), owner) for p in parts))
        result = _merge(model, scored, output=True)
        _count(result)
        return result

    def embed(self, texts: list[str]) -> np.ndarray:
        """Sentence vectors, computed inline (for loading rails examples; requests use `result.embedding`)."""
        return self.model.embed(texts)

    def _run_batch(self, items: list[tuple[str, bool, TriageModel]]) -> list[TriageResult]:
        """One run per model in the batch: during a swap, old and new requests may share a batch."""
        t0 = time.perf_counter()
        results: dict[int, TriageResult] = {}
        for model in {id(m): m for _, _, m in items}.values():
            rows = [i for i, item in enumerate(items) if item[2] is model]
            scored = model.predict([items[i][0] for i in rows], outputs=[items[i][1] for i in rows])
            results.update(zip(rows, scored, strict=True))
        metrics.child(metrics.TRIAGE_LATENCY, self.device).observe(time.perf_counter() - t0)
        metrics.TRIAGE_BATCH_SIZE.observe(len(items))
        return [results[i] for i in range(len(items))]


def _merge(model: TriageModel, parts: list[TriageResult], *, output: bool) -> TriageResult:
    """Segments of one text as one result: each score's maximum (as over one text's windows), the mean
    direction of their embeddings."""
    if len(parts) == 1:
        return parts[0]
    scores = {label: max(p.scores[label] for p in parts) for label in parts[0].scores}
    vectors = [p.embedding for p in parts if p.embedding is not None]
    embedding = None
    if vectors:
        mean = np.mean(vectors, axis=0)
        embedding = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return replace(parts[0], scores=scores, labels=model.over_threshold(scores, output=output), embedding=embedding)


def _merge_documents(model: TriageModel, main: TriageResult, docs: list[TriageResult]) -> TriageResult:
    if not docs:
        return main
    scores = dict(main.scores)
    for d in docs:
        for label in DOCUMENT_LABELS:
            scores[label] = max(scores[label], d.scores[label])
    return replace(main, scores=scores, labels=model.over_threshold(scores))


def _count(result: TriageResult) -> None:
    for label in result.labels:
        metrics.child(metrics.TRIAGE_PREDICTIONS, label).inc()
    if not result.labels or result.labels == (REFUSAL,):
        metrics.child(metrics.TRIAGE_PREDICTIONS, "benign").inc()
