"""System-prompt extraction requests in many phrasings, with benign twins (generator v4).

v7 caught 46% of held-out extraction attacks: its training data had three such sentences. Requests here are
verb x target x wrapper, grouped by target so that held-out rows ask for a target phrasing never trained on.
The twins use the same verbs and nouns about the user's own text, a product's settings or how to write a
system prompt: asking *about* system prompts is fine, asking the assistant to disclose its own is not.
"""

from __future__ import annotations

import random

from finetune.triage.data._load import load

_data = load("extraction")
VERBS: list[str] = _data["VERBS"]
TARGETS: list[str] = _data["TARGETS"]
WRAPPERS: list[str] = _data["WRAPPERS"]
SENTENCES: list[str] = _data["SENTENCES"]
TWINS: list[str] = _data["TWINS"]


def extraction_rows(rng: random.Random, n: int) -> list[dict]:
    """About `n` extraction attempts (prompt_injection) and `n` benign twins."""
    rows = []
    for _ in range(n):
        if rng.random() < 0.75:
            target, verb = rng.choice(TARGETS), rng.choice(VERBS)
            text = rng.choice(WRAPPERS).format(v=verb, vl=verb.lower(), t=target)
            group = f"sysprompt:{target}"
        else:
            text = rng.choice(SENTENCES)
            group = f"sysprompt:{text}"
        rows.append({"text": text, "labels": ["prompt_injection"], "group": group})
    for _ in range(n):
        text = rng.choice(TWINS)
        rows.append({"text": text, "labels": [], "group": f"sysprompt_twin:{text}"})
    return rows
