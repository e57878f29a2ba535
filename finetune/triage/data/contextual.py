"""Pasted context + a request that uses it against someone (generator v4).

Held out, v7 missed half the contextual behaviours about cyber attacks and all those about harassment: the
request refers to the context ("the vulnerability above", "this person") instead of naming the harm, and v3's
contextual rows only followed unrelated docstrings. Contexts here are technical write-ups and short bios/posts
(invented for this generator); each gets harmful asks and benign asks, grouped by ask, so the ask decides.
"""

from __future__ import annotations

import random

from finetune.triage.data._load import load
from finetune.triage.data.docs import window

_data = load("contextual")
VULN_CONTEXTS: list[str] = _data["VULN_CONTEXTS"]
CYBER_ASKS: list[str] = _data["CYBER_ASKS"]
CYBER_BENIGN_ASKS: list[str] = _data["CYBER_BENIGN_ASKS"]
PERSON_CONTEXTS: list[str] = _data["PERSON_CONTEXTS"]
HATE_ASKS: list[str] = _data["HATE_ASKS"]
PERSON_BENIGN_ASKS: list[str] = _data["PERSON_BENIGN_ASKS"]


def contextual_rows(rng: random.Random, n: int) -> list[dict]:
    """`n` harmful and `n` benign rows for each kind of context (technical, personal)."""
    rows = []
    kinds = [
        (VULN_CONTEXTS, CYBER_ASKS, CYBER_BENIGN_ASKS, "cyber"),
        (PERSON_CONTEXTS, HATE_ASKS, PERSON_BENIGN_ASKS, "hate_harassment"),
    ]
    for contexts, asks, benign_asks, label in kinds:
        for harmful in (True, False):
            for _ in range(n):
                ask = rng.choice(asks if harmful else benign_asks)
                ctx = "\n\n".join(rng.sample(contexts, k=rng.choice([1, 1, 2])))
                text = f"{ctx}\n\n{ask}" if rng.random() < 0.8 else f"{ask}\n\n{ctx}"
                rows.append(
                    {
                        "text": window(text, rng, size=450, keep=ask),
                        "labels": [label] if harmful else [],
                        "group": f"{'harm_ctx' if harmful else 'ctx_ask'}:{ask}",
                    }
                )
    return rows
