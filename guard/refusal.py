"""Did the model refuse? The one refusal judgement: the proxy's over-refusal flag, the retraining gate and the
pair builder all ask this module.

The phrase patterns are data (guard/refusal.yml), searched in the opening of an answer. The triage model's
refusal head can join them (its score at or over `head_threshold` counts as a refusal too); whether it should
is measured in bench/refusal_detector.py and reported in the README ("Refusal detection").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from guard.taxonomy import REFUSAL

REFUSAL_FILE = Path(__file__).resolve().with_name("refusal.yml")
# The refusal head counts at this score or above. Measured (README "Refusal detection"): at the model's own
# calibrated threshold it calls 4.5 % of compliant answers to benign look-alike prompts refusals, at 0.99 1.5 %,
# and still adds recall on held-out refusals the phrases miss.
HEAD_THRESHOLD = 0.99


class RefusalConfigError(ValueError):
    """The pattern file is unreadable or invalid; the message names the file and key."""


class _PatternFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scan_chars: int = Field(300, ge=20)
    patterns: list[str] = Field(min_length=1)


@dataclass(frozen=True)
class RefusalDetector:
    """`rx`: the compiled patterns (any object with `search`); `head_threshold`: None = patterns only."""

    rx: Any
    scan_chars: int = 300
    head_threshold: float | None = None

    def opening(self, text: str) -> str:
        return text.strip()[: self.scan_chars].replace("\u2019", "'")

    def matches(self, text: str) -> bool:
        return self.rx.search(self.opening(text)) is not None

    def judge(self, text: str, head_score: float | None = None) -> float | None:
        """The refusal score (1.0 for a phrase match) when the answer is a refusal, else None."""
        if head_score is not None and self.head_threshold is not None and head_score >= self.head_threshold:
            return head_score
        return 1.0 if self.matches(text) else None

    def flags(self, texts: Sequence[str], head_scores: Sequence[float] | None = None) -> list[bool]:
        scores: Sequence[float | None] = head_scores if head_scores is not None else [None] * len(texts)
        return [self.judge(t, s) is not None for t, s in zip(texts, scores, strict=True)]

    def batch(self, model: Any | None = None) -> Callable[[Sequence[str]], list[bool]]:
        """Flags for many answers at once, with the refusal head of `model` (a triage `TriageModel`) when given."""
        if model is None or self.head_threshold is None:
            return lambda texts: self.flags(texts)

        def flags(texts: Sequence[str]) -> list[bool]:
            if not texts:
                return []
            scored = model.predict(list(texts), outputs=True)
            return self.flags(texts, [float(r.scores.get(REFUSAL, 0.0)) for r in scored])

        return flags

    def __call__(self, text: str) -> bool:
        return self.judge(text) is not None

    def with_head(self, threshold: float | None) -> RefusalDetector:
        return replace(self, head_threshold=threshold)

    def with_patterns(self, extra: Sequence[str]) -> RefusalDetector:
        """Also these (already vetted) regexes, in RE2: a rails profile's own refusal phrasings."""
        if not extra:
            return self
        from rails.safe_regex import AnyOf, compile_linear

        return replace(self, rx=AnyOf((self.rx, compile_linear("|".join(f"(?:{p})" for p in extra), dot_all=True))))


def load_patterns(path: Path = REFUSAL_FILE) -> tuple[list[str], int]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        spec = _PatternFile.model_validate(data)
    except FileNotFoundError:
        raise RefusalConfigError(f"{path}: no such refusal pattern file") from None
    except yaml.YAMLError as exc:
        raise RefusalConfigError(f"{path}: not valid YAML ({exc})") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        raise RefusalConfigError(f"{path}: {'.'.join(map(str, err['loc'])) or '(top level)'}: {err['msg']}") from None
    return spec.patterns, spec.scan_chars


def load_detector(path: Path = REFUSAL_FILE, head_threshold: float | None = None) -> RefusalDetector:
    patterns, scan = load_patterns(path)
    try:
        rx = re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE | re.DOTALL)
    except re.error as exc:
        raise RefusalConfigError(f"{path}: patterns: {exc}") from None
    return RefusalDetector(rx, scan, head_threshold)


@cache
def shipped() -> RefusalDetector:
    """The shipped patterns, compiled once on first use (patterns only)."""
    return load_detector()
