"""The typed policy file (`guard.yml`): what the proxy does with each kind of request, per profile.

Every model forbids unknown keys so a typo is an error with a file, line and key, never a silently
ignored rule.
"""

from __future__ import annotations

from typing import Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from guard.refusal import HEAD_THRESHOLD
from guard.taxonomy import INPUT_LABELS, REFUSAL
from rails.pii import KINDS

Action = Literal["allow", "refuse", "safe_complete", "disclaim", "redact", "flag_for_review"]
InputLabel = Literal[INPUT_LABELS]  # type: ignore[valid-type]
OutputLabel = Literal[INPUT_LABELS]  # type: ignore[valid-type]  # the classifier scores answers too
PiiKind = Literal[KINDS]  # type: ignore[valid-type]

DEFAULT_REFUSAL = "I'm sorry, but I can't help with that."
REFUSAL_LABEL = REFUSAL


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(Strict):
    """What to do when a label, intent or pattern fires."""

    action: Action
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    # Labels only: fire at this fraction of the classifier's calibrated threshold for the label (a caution
    # tier below the point where the classifier calls it), instead of an absolute `threshold`.
    threshold_scale: float | None = Field(None, gt=0.0, le=1.0)
    message: str | None = None  # refuse: what the user sees (template: {alternative})
    alternative: str | None = None  # refuse: a safe thing we can offer instead
    instruction: str | None = None  # safe_complete: extra system instruction for the model
    text: str | None = None  # disclaim: appended to the answer
    shadow: bool = False  # compute and record, do not enforce

    @model_validator(mode="after")
    def _fields_fit_action(self) -> Self:
        if self.threshold is not None and self.threshold_scale is not None:
            raise ValueError("give 'threshold' or 'threshold_scale', not both")
        needs = {"safe_complete": "instruction", "disclaim": "text"}
        if (key := needs.get(self.action)) and not getattr(self, key):
            raise ValueError(f"action {self.action!r} needs {key!r}")
        only = {"message": "refuse", "alternative": "refuse", "instruction": "safe_complete", "text": "disclaim"}
        for key, action in only.items():
            if getattr(self, key) is not None and self.action != action:
                raise ValueError(f"{key!r} only applies to action {action!r}, not {self.action!r}")
        return self


class Intent(Rule):
    """A custom intent: nearest neighbour over example utterances in the triage encoder's space."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    examples: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _no_scale(self) -> Self:
        return _label_only(self)


class Pattern(Rule):
    """Keyword or regular-expression rail (case-insensitive)."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    keywords: list[str] = Field(default_factory=list)
    regex: list[str] = Field(default_factory=list)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: list[str]) -> list[str]:
        return _linear(v)

    @model_validator(mode="after")
    def _has_something(self) -> Self:
        if not self.keywords and not self.regex:
            raise ValueError("a pattern needs 'keywords' or 'regex'")
        return _label_only(self)


_R = TypeVar("_R", bound=Rule)


def _label_only(rule: _R) -> _R:
    if rule.threshold_scale is not None:
        raise ValueError("'threshold_scale' applies to label rules only (it scales the classifier's threshold)")
    return rule


class PiiRule(Strict):
    action: Literal["allow", "redact", "refuse", "flag_for_review"] = "redact"
    kinds: list[PiiKind] = Field(default_factory=lambda: list(KINDS))
    message: str | None = None
    shadow: bool = False


class LengthLimit(Strict):
    max_chars: int = Field(ge=1)
    action: Literal["refuse", "truncate"] = "refuse"
    message: str | None = None
    shadow: bool = False


class RefusalDetection(Strict):
    """Did the model refuse? The one refusal detector (guard/refusal.py): its phrase patterns on the opening of the
    answer, plus the triage model's `refusal` head at `threshold` or above (null: phrases only)."""

    enabled: bool = True
    threshold: float | None = Field(HEAD_THRESHOLD, ge=0.0, le=1.0)
    patterns: list[str] = Field(default_factory=list)  # extra regexes beside the built-in phrases

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, v: list[str]) -> list[str]:
        return _linear(v)


def _linear(patterns: list[str]) -> list[str]:
    from rails.safe_regex import check_linear

    for rx in patterns:
        check_linear(rx)  # UnsafePattern is a ValueError: reported with file, line and key
    return patterns


def _tiers(value: object) -> object:
    """A label takes one rule or a list of tiers (first that fires wins, highest threshold first)."""
    return [value] if isinstance(value, dict) else value


def _label_tiers(labels: object) -> object:
    return {k: _tiers(v) for k, v in labels.items()} if isinstance(labels, dict) else labels


class InputPolicy(Strict):
    labels: dict[InputLabel, list[Rule]] = Field(default_factory=dict)
    intents: list[Intent] = Field(default_factory=list)
    patterns: list[Pattern] = Field(default_factory=list)
    pii: PiiRule | None = None
    length: LengthLimit | None = None

    @field_validator("labels", mode="before")
    @classmethod
    def _wrap_labels(cls, v: object) -> object:
        return _label_tiers(v)

    @model_validator(mode="after")
    def _input_actions(self) -> Self:
        for p in self.patterns:
            if p.action == "redact":
                raise ValueError(f"pattern {p.name!r}: 'redact' applies to PII, use the 'pii' section")
        return self


class OutputPolicy(Strict):
    labels: dict[OutputLabel, list[Rule]] = Field(default_factory=dict)
    patterns: list[Pattern] = Field(default_factory=list)
    pii: PiiRule | None = None
    length: LengthLimit | None = None
    format: Literal["text", "json"] = "text"
    refusal: RefusalDetection = Field(default_factory=RefusalDetection)

    @field_validator("labels", mode="before")
    @classmethod
    def _wrap_labels(cls, v: object) -> object:
        return _label_tiers(v)

    @model_validator(mode="after")
    def _output_actions(self) -> Self:
        rules: list[tuple[str, Rule]] = [(f"label {k!r}", r) for k, tiers in self.labels.items() for r in tiers]
        rules += [(f"pattern {p.name!r}", p) for p in self.patterns]
        for what, rule in rules:
            if rule.action in ("safe_complete", "redact"):
                raise ValueError(f"{what}: action {rule.action!r} is not available on output")
        return self


class StreamSettings(Strict):
    """Streaming output checks: text is released only after a window containing it was checked."""

    first_window_chars: int = Field(24, ge=1)  # small first window keeps the added time to first token low
    window_chars: int = Field(160, ge=16)
    overlap_chars: int = Field(64, ge=0)  # re-checked with the next window (matches across the seam)
    hold_chars: int = Field(12, ge=0)  # released only after the next window (digit/@ runs are held longer)
    on_error: Literal["closed", "open"] = "closed"


class ProfilePatch(Strict):
    """A profile overrides the base policy: labels by name, intents and patterns by name, sections whole."""

    shadow: bool | None = None
    refusal_message: str | None = None
    principles: list[str] | None = None  # replaces the base policy's list
    input: InputPolicy | None = None
    output: OutputPolicy | None = None
    description: str | None = None


class GuardPolicy(Strict):
    version: Literal[1] = 1
    description: str | None = None
    shadow: bool = False  # global shadow mode
    refusal_message: str = DEFAULT_REFUSAL
    # What a good answer does, in plain words: the retraining loop rewrites over-refusals against these
    # (finetune/revise.py, critique and revise); no principles, no rewriting.
    principles: list[str] = Field(default_factory=list)
    default_profile: str = "default"
    tenants: dict[str, str] = Field(default_factory=dict)  # tenant -> profile
    stream: StreamSettings = Field(default_factory=StreamSettings)
    input: InputPolicy = Field(default_factory=InputPolicy)
    output: OutputPolicy = Field(default_factory=OutputPolicy)
    profiles: dict[str, ProfilePatch] = Field(default_factory=dict)
    allow_empty: bool = False  # the config may have no rails, or a profile no input rails (see rails/floor.py)

    @model_validator(mode="after")
    def _profiles_exist(self) -> Self:
        names = self.profile_names
        if self.default_profile not in names:
            raise ValueError(f"default_profile {self.default_profile!r} is not a profile ({', '.join(names)})")
        for tenant, prof in self.tenants.items():
            if prof not in names:
                raise ValueError(f"tenant {tenant!r} maps to unknown profile {prof!r}")
        return self

    @property
    def profile_names(self) -> list[str]:
        return ["default", *(n for n in self.profiles if n != "default")]


# Profile resolution -----------------------------------------------------------------------------------


class EffectiveProfile(Strict):
    name: str
    shadow: bool
    refusal_message: str
    input: InputPolicy
    output: OutputPolicy
    principles: list[str] = Field(default_factory=list)


def effective(policy: GuardPolicy, name: str) -> EffectiveProfile:
    patch = policy.profiles.get(name, ProfilePatch())
    return EffectiveProfile(
        name=name,
        shadow=policy.shadow or bool(patch.shadow),
        refusal_message=patch.refusal_message or policy.refusal_message,
        input=_merge(policy.input, patch.input),
        output=_merge(policy.output, patch.output),
        principles=policy.principles if patch.principles is None else patch.principles,
    )


_P = TypeVar("_P", InputPolicy, OutputPolicy)


def _merge(base: _P, patch: _P | None) -> _P:
    if patch is None:
        return base
    update: dict[str, object] = {}
    for key in patch.model_fields_set:
        value = getattr(patch, key)
        if key == "labels":
            value = {**base.labels, **value}
        elif key in ("intents", "patterns"):
            mine = {item.name: item for item in value}
            value = [mine.pop(item.name, item) for item in getattr(base, key)] + list(mine.values())
        update[key] = value
    return base.model_copy(update=update)
