"""The fast path for NeMo dialog rails that need no LLM: embeddings-only intents answered by canned messages.

When a config sets `rails.dialog.user_messages.embeddings_only`, NeMo picks the user intent as the nearest
example utterance (MiniLM cosine) at or above `embeddings_only_similarity_threshold` (any nearest one when
no threshold is set), else `embeddings_only_fallback_intent`. A flow `user <intent>` -> `bot <message>` whose
messages are fixed texts is then a lookup (a message with several variants: one picked at random, as NeMo
does; `rng` is seedable for tests). This module does exactly that with one embedding and one
matrix product, without running NeMo's Colang runtime (which replays the event history over every loaded
flow, 20-30 ms CPU per request); whatever it cannot decide alone goes to LLMRails as before.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np

NEEDS_NEMO = "needs_nemo"  # the intent's flow branches, calls actions or generates text: LLMRails decides
_UNSURE = "unsure"  # an approximate similarity leaves the answer open: the exact embedding decides


@dataclass(frozen=True, slots=True)
class Canned:
    rail: str  # decision name: `nemo:<flow>` (`nemo:dialog` for an unnamed flow)
    steps: tuple[tuple[str, ...], ...]  # per `bot` step of the flow, the message's variants

    def reply(self, rng: random.Random) -> str:
        """NeMo's `generate_bot_message`: one variant per bot message, chosen at random, steps joined by lines."""
        return "\n".join(v[0] if len(v) == 1 else rng.choice(v) for v in self.steps)


class CannedDialog:
    def __init__(
        self,
        embed: Any,
        examples: list[tuple[str, str]],
        flows: dict[str, Canned | str],
        threshold: float | None,
        fallback: str | None,
        approx: Any = None,
        approx_error: float = 0.0,
    ) -> None:
        self.embed, self.approx, self.approx_error = embed, approx, approx_error
        self.rng = random.Random()
        self.intents = [intent for _, intent in examples]
        self.matrix = np.asarray(embed([text for text, _ in examples]), dtype=np.float32)
        self.flows, self.threshold, self.fallback = flows, threshold, fallback
        outcomes = [flows.get(i) for i in self.intents]
        # One id per distinct outcome: two examples whose intents end in the same answer need no tie-break.
        self.outcome_ids = np.array([outcomes.index(o) for o in outcomes], dtype=np.int32)
        below = NEEDS_NEMO if fallback is None else flows.get(fallback)
        possible = set(outcomes) | ({below} if threshold is not None else set())
        self.constant = len(possible) == 1  # every message ends the same way: nothing to embed
        self.only = next(iter(possible)) if self.constant else None

    @classmethod
    def build(cls, config: Any, embed: Any, approx: Any = None, approx_error: float = 0.0) -> CannedDialog | None:
        """From a loaded `RailsConfig` (library bot messages included); None when the config is not
        embeddings-only. `approx` (optional) is a cheaper embedding whose similarities are within
        `approx_error` of `embed`'s: it decides alone wherever that error cannot change the answer."""
        um = config.rails.dialog.user_messages
        if not um.embeddings_only or not config.user_messages:
            return None
        examples = [(text, intent) for intent, texts in config.user_messages.items() for text in texts]
        flows: dict[str, Canned | str] = {}
        for flow in config.flows:
            elements = flow.get("elements") or []
            if flow.get("is_subflow") or not elements or elements[0].get("_type") != "UserIntent":
                continue
            intent = elements[0].get("intent_name")
            canned = _canned(flow, elements[1:], config.bot_messages)
            flows[intent] = NEEDS_NEMO if intent in flows else canned  # two flows for one intent: NeMo decides
        threshold, fallback = um.embeddings_only_similarity_threshold, um.embeddings_only_fallback_intent
        return cls(embed, examples, flows, threshold, fallback, approx, approx_error)

    def decide(self, text: str) -> Canned | str | None:
        """The canned answer, NEEDS_NEMO, or None (no flow: NeMo would let the LLM answer)."""
        if self.constant:
            return self.only
        if self.approx is not None:
            found = self._pick(self.matrix @ self.approx([text])[0], self.approx_error)
            if found != _UNSURE:
                return found
        return self._pick(self.matrix @ self.embed([text])[0], 0.0)

    def _pick(self, sims: np.ndarray, error: float) -> Canned | str | None:
        """NeMo's rule on similarities known to within `error`; `_UNSURE` where the error could change it."""
        best = int(np.argmax(sims))
        if self.threshold is not None and error and abs(float(sims[best]) - self.threshold) <= error:
            return _UNSURE  # the exact score might fall on the other side of the threshold
        if self.threshold is None or sims[best] >= self.threshold:
            if error and np.any(self.outcome_ids[sims >= sims[best] - 2 * error] != self.outcome_ids[best]):
                return _UNSURE  # a runner-up with another answer might be the exact nearest
            return self.flows.get(self.intents[best])
        if self.fallback is not None:
            return self.flows.get(self.fallback)
        return NEEDS_NEMO  # NeMo asks the LLM for the intent


def _canned(flow: dict[str, Any], steps: list[dict[str, Any]], bot_messages: dict[str, list[str]]) -> Canned | str:
    texts: list[tuple[str, ...]] = []
    for step in steps:
        params = step.get("action_params") or {}
        name = params.get("value")
        if step.get("_type") != "run_action" or step.get("action_name") != "utter" or not isinstance(name, str):
            return NEEDS_NEMO
        variants = tuple(bot_messages.get(name) or ())
        if not variants or any("$" in v or "{{" in v for v in variants):
            return NEEDS_NEMO  # generated or templated: only NeMo renders it
        texts.append(variants)
    if not texts:
        return NEEDS_NEMO
    name = str(flow.get("id") or "dialog")
    return Canned(f"nemo:{'dialog' if name.startswith('anonymous-') else name}", tuple(texts))
