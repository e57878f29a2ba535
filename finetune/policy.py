"""What the policy says: the refusal (with a safe alternative) a profile prescribes, and the output check.

Kept narrow: the loop touches the rails package only here. Without a rails directory (or package) the shipped
default refusal is used and every answer passes the output check (the refusal detector still runs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

DEFAULT_ALTERNATIVE = "If you are dealing with a safety concern, I can share general safety information instead."
DEFAULT_REFUSAL = f"I'm sorry, but I can't help with that. {DEFAULT_ALTERNATIVE}"

RefusalFor = Callable[[str | None, Sequence[str]], str]  # (profile, triage labels) -> refusal text
OutputCheck = Callable[[str, str | None], bool]  # (answer, profile) -> the output rails let it pass
CautionFor = Callable[[str | None, str], str | None]  # (profile, label) -> its safe-completion instruction


def accept_all(answer: str, profile: str | None) -> bool:
    return True


def default_refusal(profile: str | None, labels: Sequence[str] = ()) -> str:
    return DEFAULT_REFUSAL


def no_caution(profile: str | None, label: str) -> str | None:
    return None


def load_engine(rails_dir: Path | None) -> Any:
    """The rails engine without a scorer (offline text checks), or None when there is none to load."""
    if rails_dir is None or not Path(rails_dir).is_dir():
        return None
    try:
        from rails.engine import RailsEngine
    except ImportError:
        return None
    return RailsEngine.load(Path(rails_dir))


def _profile(engine: Any, profile: str | None) -> Any:
    return engine.profiles.get(profile or engine.default_profile) or engine.profiles[engine.default_profile]


def _label_rules(items: Any) -> list[Any]:
    """Label rules, flat: a profile lists them singly or in groups (tuples)."""
    out: list[Any] = []
    for item in items:
        out.extend(_label_rules(item) if isinstance(item, (tuple, list)) else [item])
    return out


def profile_refusals(engine: Any) -> RefusalFor:
    """The refusal the profile's rule for the exchange's harmful label gives (it carries that rule's safe
    alternative); else the profile's refusal message plus a generic alternative."""
    if engine is None:
        return default_refusal

    def refusal_for(profile: str | None, labels: Sequence[str] = ()) -> str:
        prof = _profile(engine, profile)
        rules: dict[str, Any] = {}
        for r in _label_rules(prof.input_labels):
            if r.fire.action == "refuse" and r.fire.message:
                rules.setdefault(r.label, r)  # a label may have tiers; the refusing one carries the alternative
        for label in labels:
            rule = rules.get(label)
            if rule is not None:
                msg = rule.fire.message.strip()
                return msg if msg != prof.refusal_message.strip() else f"{msg} {DEFAULT_ALTERNATIVE}"
        return f"{prof.refusal_message.strip()} {DEFAULT_ALTERNATIVE}"

    return refusal_for


def profile_principles(engine: Any) -> Callable[[str | None], tuple[str, ...]]:
    """The principles a profile writes down for good answers (empty: none, or no rails)."""
    if engine is None:
        return lambda profile: ()
    return lambda profile: tuple(getattr(_profile(engine, profile), "principles", ()))


def profile_cautions(engine: Any) -> CautionFor:
    """The instruction a label's safe-completion tier gives (the caution zone below its refuse tier)."""
    if engine is None:
        return no_caution

    def caution_for(profile: str | None, label: str) -> str | None:
        for r in _label_rules(_profile(engine, profile).input_labels):
            if r.label == label and r.fire.action == "safe_complete" and r.fire.instruction:
                return str(r.fire.instruction)
        return None

    return caution_for


def rails_output_check(engine: Any) -> OutputCheck:
    """True when no enforcing output rule (patterns, length, format, PII block) would block the answer.
    Label rules need the triage scorer and are left to the refusal detector and the eval gates."""
    if engine is None:
        return accept_all
    from rails import pii
    from rails.engine import output_fires

    def output_ok(answer: str, profile: str | None) -> bool:
        prof = _profile(engine, profile)
        if any(f.decision(s).result == "block" for f, s in output_fires(prof, answer, None)):
            return False
        if prof.output_pii is not None and pii.find(answer, prof.output_pii.kinds):
            return prof.output_pii.fire.decision().result != "block"
        return True

    return output_ok
