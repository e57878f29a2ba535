"""A profile compiled for the request path: regexes built, templates rendered, intent examples embedded.

Nothing here parses YAML or renders templates per request; `Fire` objects are ready-made decisions.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from guard.pipeline import RailDecision, RailResult, Stage, TriageResult
from guard.refusal import RefusalDetector, shipped
from rails.policy import EffectiveProfile, Intent, LengthLimit, Pattern, PiiRule, RefusalDetection, Rule
from rails.safe_regex import AnyOf, compile_linear

log = logging.getLogger(__name__)

DEFAULT_INTENT_THRESHOLD = 0.75


class TextScorer(Protocol):
    async def score_text(self, text: str) -> TriageResult: ...


class Searcher(Protocol):
    """A compiled pattern: `re.Pattern`, an RE2 pattern or `AnyOf`."""

    def search(self, text: str) -> object: ...


class Encoder(Protocol):
    def embed(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class Fire:
    """One rule, ready to become a decision when it fires."""

    rail: str
    stage: Stage
    action: str
    shadow: bool
    message: str | None = None
    instruction: str | None = None
    text: str | None = None
    result: RailResult | None = None  # fixed result (rail errors); else derived from the action

    def decision(self, score: float | None = None, latency_s: float = 0.0) -> RailDecision:
        result = self.result or _RESULTS[self.action]
        if self.shadow:
            return RailDecision(
                self.rail,
                self.stage,
                "would_block" if result == "block" else result,
                "shadow",
                self.action,
                self.message,
                score,
                latency_s,
            )
        return RailDecision(self.rail, self.stage, result, "enforce", self.action, self.message, score, latency_s)


_RESULTS: dict[str, RailResult] = {
    "refuse": "block",
    "safe_complete": "pass",
    "disclaim": "pass",
    "redact": "mask",
    "flag_for_review": "flag",
    "truncate": "mask",
    "allow": "pass",
}


def make_fire(rail: str, stage: Stage, rule: Rule | PiiRule | LengthLimit, prof: EffectiveProfile) -> Fire:
    message = None
    if rule.action == "refuse":
        message = rule.message or prof.refusal_message
        alternative = getattr(rule, "alternative", None)
        if "{alternative}" in message:
            message = message.replace("{alternative}", alternative or "").strip()
        elif alternative:
            message = f"{message} {alternative}"
    return Fire(
        rail,
        stage,
        rule.action,
        prof.shadow or rule.shadow,
        message,
        getattr(rule, "instruction", None),
        getattr(rule, "text", None),
    )


@dataclass(frozen=True, slots=True)
class LabelRule:
    label: str
    threshold: float | None  # None: the classifier's own per-label threshold (label in TriageResult.labels)
    fire: Fire
    scale: float | None = None  # fire at this fraction of the classifier's threshold (never when it is unknown)

    def score(self, triage: TriageResult) -> float | None:
        """The label's score when the rule fires, else None."""
        score = triage.scores.get(self.label, 0.0)
        if self.threshold is not None:
            hit = score >= self.threshold
        elif self.scale is not None:
            base = triage.thresholds.get(self.label)
            hit = base is not None and score >= self.scale * base
        else:
            hit = self.label in triage.labels
        return score if hit else None


def fire_labels(groups: list[tuple[LabelRule, ...]], triage: TriageResult) -> list[tuple[Fire, float]]:
    """Per label, the first tier that fires (tiers are ordered by threshold, highest first)."""
    fired = []
    for tiers in groups:
        for rule in tiers:
            score = rule.score(triage)
            if score is not None:
                if rule.fire.action != "allow":
                    fired.append((rule.fire, score))
                break
    return fired


@dataclass(frozen=True, slots=True)
class PatternRule:
    rx: Searcher
    fire: Fire


@dataclass(frozen=True, slots=True)
class PiiCheck:
    kinds: frozenset[str]
    fire: Fire


@dataclass(frozen=True, slots=True)
class LengthCheck:
    max_chars: int
    fire: Fire


class IntentIndex:
    """Example utterances as unit vectors; an intent's score is its best cosine similarity."""

    def __init__(self, intents: list[Intent], fires: list[Fire], encoder: Encoder) -> None:
        texts = [ex for intent in intents for ex in intent.examples]
        vecs = np.asarray(encoder.embed(texts), dtype=np.float32)
        self.matrix = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        sizes = [len(i.examples) for i in intents]
        self.starts = np.cumsum([0, *sizes[:-1]])
        self.thresholds = np.array([i.threshold or DEFAULT_INTENT_THRESHOLD for i in intents], dtype=np.float32)
        self.fires = fires

    def match(self, embedding: np.ndarray) -> list[tuple[Fire, float]]:
        v = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if v.shape[0] != self.matrix.shape[1]:
            raise ValueError(f"embedding has {v.shape[0]} dims, intents were embedded with {self.matrix.shape[1]}")
        sims = self.matrix @ (v / max(float(np.linalg.norm(v)), 1e-12))
        best = np.maximum.reduceat(sims, self.starts)
        return [(self.fires[i], float(best[i])) for i in np.flatnonzero(best >= self.thresholds)]


def compile_patterns(patterns: list[Pattern], stage: Stage, prof: EffectiveProfile) -> list[PatternRule]:
    out = []
    for p in patterns:
        parts: list[Searcher] = []
        if p.keywords:  # escaped literals cannot backtrack; `re` keeps Unicode word boundaries
            parts.append(re.compile("|".join(rf"\b{re.escape(k)}\b" for k in p.keywords), re.I))
        if p.regex:
            parts.append(compile_linear("|".join(f"(?:{rx})" for rx in p.regex)))
        rx = parts[0] if len(parts) == 1 else AnyOf(tuple(parts))
        out.append(PatternRule(rx, make_fire(f"pattern:{p.name}", stage, p, prof)))
    return out


def compile_refusal(spec: RefusalDetection) -> RefusalDetector | None:
    """The one refusal detector (guard/refusal.py) with this profile's head threshold and extra phrasings."""
    if not spec.enabled:
        return None
    return shipped().with_head(spec.threshold).with_patterns(spec.patterns)


@dataclass(slots=True)
class CompiledProfile:
    name: str
    refusal_message: str
    input_labels: list[tuple[LabelRule, ...]]
    input_patterns: list[PatternRule]
    intents: IntentIndex | None
    input_pii: PiiCheck | None
    input_length: LengthCheck | None
    output_labels: list[tuple[LabelRule, ...]]
    output_patterns: list[PatternRule]
    output_pii: PiiCheck | None
    output_length: LengthCheck | None
    output_json: bool
    refusal: RefusalDetector | None
    shadow: bool
    principles: tuple[str, ...] = ()

    @property
    def needs_output_scores(self) -> bool:
        return bool(self.output_labels) or (self.refusal is not None and self.refusal.head_threshold is not None)


def compile_profile(prof: EffectiveProfile, encoder: Encoder | None) -> CompiledProfile:
    inp, out = prof.input, prof.output
    intents = None
    if inp.intents:
        if encoder is None:
            log.warning(
                "profile %s: no encoder given, custom intents %s are inactive", prof.name, [i.name for i in inp.intents]
            )
        else:
            fires = [make_fire(f"intent:{i.name}", "input", i, prof) for i in inp.intents]
            intents = IntentIndex(inp.intents, fires, encoder)
    return CompiledProfile(
        name=prof.name,
        refusal_message=prof.refusal_message,
        input_labels=_labels(inp.labels, "input", prof),
        input_patterns=compile_patterns(inp.patterns, "input", prof),
        intents=intents,
        input_pii=_pii(inp.pii, "input", prof),
        input_length=_length(inp.length, "input", prof),
        output_labels=_labels(out.labels, "output", prof),
        output_patterns=compile_patterns(out.patterns, "output", prof),
        output_pii=_pii(out.pii, "output", prof),
        output_length=_length(out.length, "output", prof),
        output_json=out.format == "json",
        refusal=compile_refusal(out.refusal),
        shadow=prof.shadow,
        principles=tuple(prof.principles),
    )


def _labels(labels: dict[str, list[Rule]], stage: Stage, prof: EffectiveProfile) -> list[tuple[LabelRule, ...]]:
    groups = []
    for label, rules in labels.items():
        if all(r.action == "allow" for r in rules):
            continue
        # Highest explicit threshold first, then the classifier's own threshold, then tiers scaled below it.
        ordered = sorted(
            rules,
            reverse=True,
            key=lambda r: (
                (2, r.threshold)
                if r.threshold is not None
                else (0, r.threshold_scale)
                if r.threshold_scale is not None
                else (1, 1.0)
            ),
        )
        groups.append(
            tuple(
                LabelRule(label, r.threshold, make_fire(f"label:{label}", stage, r, prof), r.threshold_scale)
                for r in ordered
            )
        )
    return groups


def _pii(rule: PiiRule | None, stage: Stage, prof: EffectiveProfile) -> PiiCheck | None:
    if rule is None or rule.action == "allow":
        return None
    return PiiCheck(frozenset(rule.kinds), make_fire("pii", stage, rule, prof))


def _length(rule: LengthLimit | None, stage: Stage, prof: EffectiveProfile) -> LengthCheck | None:
    return None if rule is None else LengthCheck(rule.max_chars, make_fire("length", stage, rule, prof))
