"""The triage taxonomy shared by the classifier, the rails and the records.

Labels are independent (multi-label, sigmoid). A request with no label over its threshold is `benign`.
"""

from __future__ import annotations

HARMFUL = (
    "violence_weapons",
    "self_harm",
    "sexual",
    "hate_harassment",
    "crime",
    "cyber",
    "cbrn",
    "privacy",
)
ATTACKS = ("jailbreak", "prompt_injection")
ADVICE = ("medical_advice", "financial_advice", "legal_advice")
INPUT_LABELS = HARMFUL + ATTACKS + ADVICE
BENIGN = "benign"

# Scored on model outputs: did the model refuse?
REFUSAL = "refusal"


def is_harmful(label: str) -> bool:
    return label in HARMFUL


def is_attack(label: str) -> bool:
    return label in ATTACKS
