"""Refusal detection on generated answers: phrase patterns, plus the triage model's refusal score when present.

Patterns alone miss paraphrases and the classifier alone misses short curt refusals, so either one counts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

_PATTERNS = [
    r"\bI(?:'m| am) (?:sorry|afraid)\b.{0,40}\b(?:can(?:'|no)t|unable|not able|won't)",
    r"\bI (?:can(?:'|no)t|won't|will not|am unable to|am not able to|must decline to|do not|don't) "
    r"(?:help|assist|provide|comply|do that|fulfil|fulfill|answer|share|support|give|engage|create|write|generate)",
    r"\b(?:can(?:'|no)t|unable to) (?:help|assist) with (?:that|this)",
    r"\bI must (?:decline|refuse)",
    r"\bI(?:'m| am) not (?:able|allowed|comfortable|going) to\b",
    r"\bas an AI\b.{0,60}\b(?:can(?:'|no)t|not able|unable|don't|do not)",
    r"\b(?:against|violates?) (?:my|the|our) (?:guidelines|policies|policy|principles|ethical)",
    r"\b(?:illegal|unethical|harmful) and I (?:can(?:'|no)t|won't|will not)",
    r"\bI (?:strongly )?(?:advise|urge) (?:you )?against\b",
    r"\bnot (?:appropriate|something I can)\b",
    # Disguised refusals DPO candidates drifted to in the demo (finetune/README.md, run 6).
    r"\bI (?:don't|do not) have the (?:capability|ability|capacity) to\b",
    r"\bI(?:'m| am) not (?:equipped|designed|programmed) to (?:help|assist|provide|answer|give|do)\b",
]
REFUSAL_RE = re.compile("|".join(f"(?:{p})" for p in _PATTERNS), re.IGNORECASE | re.DOTALL)

# Only the opening of an answer decides: a helpful answer may later say "I can't stress enough".
_HEAD_CHARS = 240


def pattern_refusal(text: str) -> bool:
    head = text.strip()[:_HEAD_CHARS].replace("\u2019", "'")
    return bool(REFUSAL_RE.search(head))


ScoreFn = Callable[[Sequence[str]], Sequence[float]]


@dataclass
class RefusalDetector:
    """`score` returns a refusal probability per text (the triage model); None = patterns only."""

    score: ScoreFn | None = None
    threshold: float = 0.5

    def flags(self, texts: Sequence[str]) -> list[bool]:
        by_pattern = [pattern_refusal(t) for t in texts]
        if self.score is None or not texts:
            return by_pattern
        scores = self.score(list(texts))
        return [p or s >= self.threshold for p, s in zip(by_pattern, scores, strict=True)]

    def __call__(self, text: str) -> bool:
        return self.flags([text])[0]


def triage_refusal_scorer(triage_dir: str) -> ScoreFn | None:
    """The triage model's refusal head, or None when the model is not built (patterns alone then)."""

    if not (Path(triage_dir)).is_dir():
        return None
    try:
        from guard.triage.runtime import TriageModel
    except ImportError:
        return None
    from guard.taxonomy import REFUSAL

    model = TriageModel.load(Path(triage_dir))

    def score(texts: Sequence[str]) -> list[float]:
        return [float(r.scores.get(REFUSAL, 0.0)) for r in model.predict(list(texts))]

    return score
