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
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from guard import metrics
from guard.pipeline import Exchange, TriageResult
from guard.taxonomy import REFUSAL
from guard.triage.batcher import MicroBatcher
from guard.triage.runtime import TriageModel

if TYPE_CHECKING:
    from guard.domain import Message
    from guard.settings import Settings

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
    ) -> None:
        self.model = model
        self.max_windows = max_windows
        self.segment_chars = model.max_len * CHARS_PER_TOKEN
        self._batcher: MicroBatcher[tuple[str, bool], TriageResult] = MicroBatcher(
            self._run_batch,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            name="triage",
            workers=workers,
            per_owner=PER_OWNER,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> TriageStage:
        model = TriageModel.load(settings.triage_dir, device=settings.triage_device, threads=settings.triage_threads)
        return cls(
            model,
            max_batch=settings.triage_max_batch,
            max_wait_ms=settings.triage_max_wait_ms,
            max_windows=settings.triage_max_windows,
            workers=settings.triage_workers,
        )

    @property
    def device(self) -> str:
        return self.model.device

    @property
    def version(self) -> str:
        return self.model.version

    async def start(self) -> None:
        metrics.TRIAGE_DEVICE.clear()
        metrics.TRIAGE_DEVICE.labels(self.device).set(1)
        await self._batcher.start()

    async def aclose(self) -> None:
        await self._batcher.aclose()

    async def classify(self, exchange: Exchange) -> TriageResult:
        work = plan(exchange.messages, self.max_windows, self.segment_chars)
        if work.cut:
            metrics.TRIAGE_SAMPLED.inc()
        owner = object()  # this request's turn in the batcher
        parts = [*work.conversation, *(p for doc in work.documents for p in doc)]
        scored = await asyncio.gather(*(self._batcher.submit((p, False), owner) for p in parts))
        main = self._merge(scored[: len(work.conversation)], output=False)
        rest = scored[len(work.conversation) :]
        docs = []
        for doc in work.documents:
            docs.append(self._merge(rest[: len(doc)], output=False))
            rest = rest[len(doc) :]
        result = self._merge_documents(main, docs)
        _count(result)
        return result

    async def score_text(self, text: str) -> TriageResult:
        """Harm and refusal scores for a model answer; "refusal" is in `labels` when over its threshold."""
        owner = object()
        parts = segments(text, self.max_windows, self.segment_chars)
        result = self._merge(
            await asyncio.gather(*(self._batcher.submit((p, True), owner) for p in parts)), output=True
        )
        _count(result)
        return result

    def embed(self, texts: list[str]) -> np.ndarray:
        """Sentence vectors, computed inline (for loading rails examples; requests use `result.embedding`)."""
        return self.model.embed(texts)

    def _merge(self, parts: list[TriageResult], *, output: bool) -> TriageResult:
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
        return replace(
            parts[0], scores=scores, labels=self.model.over_threshold(scores, output=output), embedding=embedding
        )

    def _merge_documents(self, main: TriageResult, docs: list[TriageResult]) -> TriageResult:
        if not docs:
            return main
        scores = dict(main.scores)
        for d in docs:
            for label in DOCUMENT_LABELS:
                scores[label] = max(scores[label], d.scores[label])
        return replace(main, scores=scores, labels=self.model.over_threshold(scores))

    def _run_batch(self, items: list[tuple[str, bool]]) -> list[TriageResult]:
        t0 = time.perf_counter()
        results = self.model.predict([text for text, _ in items], outputs=[out for _, out in items])
        metrics.child(metrics.TRIAGE_LATENCY, self.device).observe(time.perf_counter() - t0)
        metrics.TRIAGE_BATCH_SIZE.observe(len(items))
        return results


def _count(result: TriageResult) -> None:
    for label in result.labels:
        metrics.child(metrics.TRIAGE_PREDICTIONS, label).inc()
    if not result.labels or result.labels == (REFUSAL,):
        metrics.child(metrics.TRIAGE_PREDICTIONS, "benign").inc()
