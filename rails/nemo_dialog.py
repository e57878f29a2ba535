"""The fast path for NeMo dialog rails that need no LLM: embeddings-only intents answered by canned messages.

When a config sets `rails.dialog.user_messages.embeddings_only`, NeMo picks the user intent as the nearest
example utterance (MiniLM cosine) at or above `embeddings_only_similarity_threshold` (any nearest one when
no threshold is set), else `embeddings_only_fallback_intent`. A flow `user <intent>` -> `bot <message>` whose
messages have one fixed text is then a lookup. This module does exactly that with one embedding and one
matrix product, without running NeMo's Colang runtime (which replays the event history over every loaded
flow, 20-30 ms CPU per request); whatever it cannot decide alone goes to LLMRails as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

NEEDS_NEMO = "needs_nemo"  # the intent's flow branches, calls actions or generates text: LLMRails decides


@dataclass(frozen=True, slots=True)
class Canned:
    rail: str  # decision name: `nemo:<flow>` (`nemo:dialog` for an unnamed flow)
    reply: str


class CannedDialog:
    def __init__(
        self,
        embed: Any,
        examples: list[tuple[str, str]],
        flows: dict[str, Canned | str],
        threshold: float | None,
        fallback: str | None,
    ) -> None:
        self.embed = embed
        self.intents = [intent for _, intent in examples]
        self.matrix = np.asarray(embed([text for text, _ in examples]), dtype=np.float32)
        self.flows, self.threshold, self.fallback = flows, threshold, fallback

    @classmethod
    def build(cls, config: Any, embed: Any) -> CannedDialog | None:
        """From a loaded `RailsConfig` (library bot messages included); None when the config is not
        embeddings-only."""
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
        return cls(embed, examples, flows, um.embeddings_only_similarity_threshold, um.embeddings_only_fallback_intent)

    def decide(self, text: str) -> Canned | str | None:
        """The canned answer, NEEDS_NEMO, or None (no flow: NeMo would let the LLM answer)."""
        v = self.embed([text])[0]
        sims = self.matrix @ v
        best = int(np.argmax(sims))
        if self.threshold is None or sims[best] >= self.threshold:
            intent = self.intents[best]
        elif self.fallback is not None:
            intent = self.fallback
        else:
            return NEEDS_NEMO  # NeMo asks the LLM for the intent
        return self.flows.get(intent)


def _canned(flow: dict[str, Any], steps: list[dict[str, Any]], bot_messages: dict[str, list[str]]) -> Canned | str:
    texts = []
    for step in steps:
        params = step.get("action_params") or {}
        name = params.get("value")
        if step.get("_type") != "run_action" or step.get("action_name") != "utter" or not isinstance(name, str):
            return NEEDS_NEMO
        variants = bot_messages.get(name) or []
        if len(variants) != 1 or "$" in variants[0] or "{{" in variants[0]:
            return NEEDS_NEMO  # generated, randomly chosen or templated: only NeMo renders it
        texts.append(variants[0])
    if not texts:
        return NEEDS_NEMO
    name = str(flow.get("id") or "dialog")
    return Canned(f"nemo:{'dialog' if name.startswith('anonymous-') else name}", "\n".join(texts))
