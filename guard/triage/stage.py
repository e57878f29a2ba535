"""The pipeline's triage stage: conversation -> texts -> micro-batched ONNX model -> `TriageResult`.

What is scored for a request:
- the latest user turn, with the previous turn pair as short context when the latest turn is short (a "yes, do
  it" only means something next to what it answers), formatted as the training data's context;
- every tool/function message (documents, retrieval and tool results) separately, for injections only: a
  retrieved page about weapons is not a harmful request, but an instruction hidden in it is an attack.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
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


class TriageStage:
    def __init__(self, model: TriageModel, *, max_batch: int = 32, max_wait_ms: float = 2.0) -> None:
        self.model = model
        self._batcher: MicroBatcher[tuple[str, bool], TriageResult] = MicroBatcher(
            self._run_batch, max_batch=max_batch, max_wait_ms=max_wait_ms, name="triage"
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> TriageStage:
        model = TriageModel.load(settings.triage_dir, device=settings.triage_device, threads=settings.triage_threads)
        return cls(model, max_batch=settings.triage_max_batch, max_wait_ms=settings.triage_max_wait_ms)

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
        messages = exchange.messages
        docs = document_texts(messages)
        results = await asyncio.gather(
            self._batcher.submit((conversation_text(messages), False)),
            *(self._batcher.submit((d, False)) for d in docs),
        )
        result = self._merge_documents(results[0], results[1:])
        _count(result)
        return result

    async def score_text(self, text: str) -> TriageResult:
        """Harm and refusal scores for a model answer; "refusal" is in `labels` when over its threshold."""
        result = await self._batcher.submit((text, True))
        _count(result)
        return result

    def embed(self, texts: list[str]) -> np.ndarray:
        """Sentence vectors, computed inline (for loading rails examples; requests use `result.embedding`)."""
        return self.model.embed(texts)

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
        metrics.TRIAGE_LATENCY.labels(self.device).observe(time.perf_counter() - t0)
        metrics.TRIAGE_BATCH_SIZE.observe(len(items))
        return results


def _count(result: TriageResult) -> None:
    for label in result.labels:
        metrics.TRIAGE_PREDICTIONS.labels(label).inc()
    if not result.labels or result.labels == (REFUSAL,):
        metrics.TRIAGE_PREDICTIONS.labels("benign").inc()
