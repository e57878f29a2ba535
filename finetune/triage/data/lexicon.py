"""Slot values for the synthetic prompt generator.

Each harmful category has *acts* (what a harmful request asks for) and *content* (harmful text itself, not a
request), plus *scary-word negatives*: benign prompts that share its vocabulary. Keep entries short and varied;
the generator combines them with many request frames, styles and contexts.
"""

from __future__ import annotations

from finetune.triage.data._load import load

_data = load("lexicon")
HARM_ACTS: dict[str, list[str]] = _data["HARM_ACTS"]
HARM_CONTENT: dict[str, list[str]] = _data["HARM_CONTENT"]
SCARY_BENIGN: dict[str, list[str]] = _data["SCARY_BENIGN"]
ADVICE_PERSONAL: dict[str, list[str]] = _data["ADVICE_PERSONAL"]
ADVICE_GENERAL: dict[str, list[str]] = _data["ADVICE_GENERAL"]
BENIGN_TASKS: list[str] = _data["BENIGN_TASKS"]
ROLEPLAY_BENIGN: list[str] = _data["ROLEPLAY_BENIGN"]
ATTACK_JAILBREAK: list[str] = _data["ATTACK_JAILBREAK"]
DIRECT_INJECTION: list[str] = _data["DIRECT_INJECTION"]
HIDDEN_INSTRUCTIONS: list[str] = _data["HIDDEN_INSTRUCTIONS"]
DOC_TEXTS: list[str] = _data["DOC_TEXTS"]
DOC_FRAMES: list[str] = _data["DOC_FRAMES"]
PERSONAS: list[str] = _data["PERSONAS"]
LANG_TOUCHES: list[tuple[str, str]] = [tuple(t) for t in _data["LANG_TOUCHES"]]
