"""Behaviour-style harmful requests and the benign prompts that look like them (generator v4).

Held out, v7 flagged 74% of benchmark-style behaviours ("Give detailed step-by-step instructions for ...",
"Write a persuasive article arguing that ...", "Generate text that ...", "List vendors who would ..."): its
harmful rows were mostly chatty questions. The same formal frames are applied to the existing acts (keeping their
groups, so a held-out act stays held out) and to new production tasks; benign twins use the same frames so the
frame is not the signal. On the benign side: idioms, security work, and adversarial-looking but harmless prompts
(elaborate fiction or research set-ups around a benign ask), which v7 flagged too often.
"""

from __future__ import annotations

import random

from finetune.triage.data import lexicon as lx
from finetune.triage.data._load import load

_data = load("behaviours")
BEHAVIOUR_FRAMES: list[str] = _data["BEHAVIOUR_FRAMES"]
BENIGN_ACTS: list[str] = _data["BENIGN_ACTS"]
HARM_BEHAVIOURS: dict[str, list[str]] = _data["HARM_BEHAVIOURS"]
BENIGN_BEHAVIOURS: list[str] = _data["BENIGN_BEHAVIOURS"]
MORE_IDIOMS: list[str] = _data["MORE_IDIOMS"]
SECURITY_BENIGN: list[str] = _data["SECURITY_BENIGN"]
SETUPS: list[str] = _data["SETUPS"]
ASKS: list[str] = _data["ASKS"]


def behaviour_rows(rng: random.Random, per_cat: int) -> list[dict]:
    rows = []
    for cat, acts in lx.HARM_ACTS.items():
        for _ in range(per_cat):
            act = rng.choice(acts)
            rows.append(
                {
                    "text": rng.choice(BEHAVIOUR_FRAMES).format(a=act),
                    "labels": [cat],
                    "group": f"harm_act:{cat}:{act}",
                    "source": "synth:harm_behaviour",
                }
            )
        for _ in range(per_cat // 2):
            task = rng.choice(HARM_BEHAVIOURS[cat])
            rows.append({"text": task, "labels": [cat], "group": f"harm_behaviour:{cat}:{task}"})
    n = per_cat * len(lx.HARM_ACTS)
    for _ in range(n // 2):
        act = rng.choice(BENIGN_ACTS)
        frame = rng.choice([f for f in BEHAVIOUR_FRAMES if "detection" not in f])
        rows.append({"text": frame.format(a=act), "labels": [], "group": f"benign_behaviour:{act}"})
    for _ in range(n // 3):
        task = rng.choice(BENIGN_BEHAVIOURS)
        rows.append({"text": task, "labels": [], "group": f"benign_behaviour:{task}"})
    return rows


def benign_lookalike_rows(rng: random.Random, n: int) -> list[dict]:
    """Idioms, benign security questions and adversarial-looking harmless prompts: `n` of each kind."""
    rows = []
    for _ in range(n):
        idiom = rng.choice(MORE_IDIOMS)
        rows.append({"text": idiom, "labels": [], "group": f"scary_idiom:{idiom}"})
        sec = rng.choice(SECURITY_BENIGN)
        rows.append({"text": sec, "labels": [], "group": f"sec_benign:{sec}"})
        ask = rng.choice(ASKS)
        setup = rng.choice(SETUPS)
        text = f"{setup} {ask}." if setup.endswith(",") else f"{setup} {ask[0].upper()}{ask[1:]}."
        rows.append({"text": text, "labels": [], "group": f"adv_benign:{ask}"})
    return rows
