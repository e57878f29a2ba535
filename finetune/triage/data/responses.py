"""Synthetic model answers for the refusal head: refusals, partial refusals and compliant answers.

Compliant answers include hard negatives (disclaimers, "can't" in other senses) so the head learns refusal
intent rather than the word "sorry".
"""

from __future__ import annotations

import random

from finetune.triage.data._load import load

_data = load("responses")
REFUSAL_OPENERS: list[str] = _data["REFUSAL_OPENERS"]
REFUSAL_FOLLOWUPS: list[str] = _data["REFUSAL_FOLLOWUPS"]
COMPLIANT: list[str] = _data["COMPLIANT"]
TOPICS: list[tuple[str, str, str]] = [tuple(t) for t in _data["TOPICS"]]
THINGS: list[str] = _data["THINGS"]
STEPS: list[str] = _data["STEPS"]
HARMFUL_COMPLIANCE: list[tuple[str, str]] = [tuple(t) for t in _data["HARMFUL_COMPLIANCE"]]
DOC_LEADS: list[str] = _data["DOC_LEADS"]


def _real_paragraphs() -> list[str]:
    from finetune.triage.data.docs import module_paragraphs

    return [p for paras in module_paragraphs().values() for p in paras]


def synth_responses(rng: random.Random, n: int) -> list[dict]:
    """Rows: text, refusal (0/1), labels (harm category for harmful compliance), group (template id)."""
    rows: list[dict] = []
    paragraphs = _real_paragraphs()
    for _ in range(n):
        r = rng.random()
        if r < 0.45:
            i = rng.randrange(len(REFUSAL_OPENERS))
            topic, verb, safe = rng.choice(TOPICS)
            j = rng.randrange(len(REFUSAL_FOLLOWUPS))
            text = (REFUSAL_OPENERS[i] + REFUSAL_FOLLOWUPS[j]).format(topic=topic, verb=verb, safe=safe)
            rows.append({"text": text, "refusal": 1, "labels": [], "group": f"refusal:{i}"})
        elif r < 0.55 and paragraphs:  # long, real, compliant prose (docs): many imperatives, no refusal
            i = rng.randrange(len(paragraphs))
            lead = rng.choice(DOC_LEADS)
            rows.append({"text": lead + paragraphs[i], "refusal": 0, "labels": [], "group": f"comply_doc:{i}"})
        elif r < 0.9:
            i = rng.randrange(len(COMPLIANT))
            text = COMPLIANT[i].format(thing=rng.choice(THINGS), step=rng.choice(STEPS))
            rows.append({"text": text, "refusal": 0, "labels": [], "group": f"comply:{i}"})
        else:
            i = rng.randrange(len(HARMFUL_COMPLIANCE))
            cat, text = HARMFUL_COMPLIANCE[i]
            rows.append({"text": text, "refusal": 0, "labels": [cat], "group": f"harmful_comply:{i}"})
    return rows
