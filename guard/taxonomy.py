"""The triage taxonomy shared by the classifier, the rails and the records.

Labels are independent (multi-label, sigmoid). A request with no label over its threshold is `benign`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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


def labels_over(
    scores: Mapping[str, float],
    thresholds: Mapping[str, float],
    labels: Iterable[str] = INPUT_LABELS,
    *,
    output: bool = False,
) -> tuple[str, ...]:
    """The `labels` (in their order) scored at or over their thresholds; "refusal" joins them only for a model
    answer (`output`), never for a user's input."""
    over = [lab for lab in labels if lab != REFUSAL and lab in thresholds and scores.get(lab, 0.0) >= thresholds[lab]]
    if output and scores.get(REFUSAL, 0.0) >= thresholds.get(REFUSAL, 0.5):
        over.append(REFUSAL)
    return tuple(over)
