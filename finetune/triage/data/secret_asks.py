"""Asks for what the assistant guards (a password, a key, other users' data), with benign twins (generator v8).

v17 caught 5 % of the held-out extraction attacks that ask for a secret or a user's data rather than for the
system prompt (`extraction.py`): persuasion, role-play, piece by piece, in another language. Asks are wrapper x
target, grouped by target, so held-out generator rows ask for a target never trained on. The twins use the same
words about the user's own passwords and data, password hygiene, privacy law and fiction: asking about passwords
is fine, asking the assistant to hand out the ones it holds is not.
"""

from __future__ import annotations

import random

from finetune.triage.data._load import load

_data = load("secret_asks")
TARGETS: list[str] = _data["TARGETS"]
WRAPPERS: list[str] = _data["WRAPPERS"]
SENTENCES: list[str] = _data["SENTENCES"]
TWIN_OWN: list[str] = _data["TWIN_OWN"]
TWIN_WRAPPERS: list[str] = _data["TWIN_WRAPPERS"]
TWINS: list[str] = _data["TWINS"]


def secret_ask_rows(rng: random.Random, n: int) -> list[dict]:
    """About `n` asks for guarded secrets or users' data (prompt_injection) and `n` benign twins."""
    rows = []
    for _ in range(n):
        if rng.random() < 0.8:
            target = rng.choice(TARGETS)
            text = rng.choice(WRAPPERS).format(t=target, T=target[0].upper() + target[1:])
            group = f"secret_ask:{target}"
        else:
            text = rng.choice(SENTENCES)
            group = f"secret_ask:{text}"
        rows.append({"text": text, "labels": ["prompt_injection"], "group": group})
    for _ in range(n):
        if rng.random() < 0.5:
            own = rng.choice(TWIN_OWN)
            text, group = rng.choice(TWIN_WRAPPERS).format(o=own), f"secret_twin:{own}"
        else:
            text = rng.choice(TWINS)
            group = f"secret_twin:{text}"
        rows.append({"text": text, "labels": [], "group": group})
    return rows
