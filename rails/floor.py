"""The floor under a rails config: a `guard.yml` that would switch the guard off by accident is refused.

An empty file (an editor's truncating save, a failed copy) parses as `{}`, and every section has a default, so
without this it would load as a valid config with no rails at all; so would a file cut before its rails. Such
a config is refused at startup and on reload (the running config keeps serving). A reload that takes away
every input rail a profile had is refused too. Either is allowed when the file says `allow_empty: true`.
"""

from __future__ import annotations

from typing import Any

from rails.policy import GuardPolicy, InputPolicy, OutputPolicy, effective

_HOW = "set 'allow_empty: true' in guard.yml if that is intended"


def has_input_rails(policy: InputPolicy) -> bool:
    pii_on = policy.pii is not None and policy.pii.action != "allow"
    return bool(policy.labels or policy.intents or policy.patterns or policy.length or pii_on)


def has_output_rails(policy: OutputPolicy) -> bool:
    pii_on = policy.pii is not None and policy.pii.action != "allow"
    return bool(policy.labels or policy.patterns or policy.length or pii_on or policy.format == "json")


def _guarded(policy: GuardPolicy) -> set[str]:
    """Profiles with at least one input rail."""
    return {n for n in policy.profile_names if has_input_rails(effective(policy, n).input)}


def load_errors(path: object, raw: Any, policy: GuardPolicy, flows: bool) -> list[str]:
    """Why this `guard.yml` cannot be loaded. `raw` is the parsed YAML before defaults; `flows`: the directory
    has Colang/NeMo flows (rails of their own)."""
    if not raw:
        return [f"{path}:1: the file is empty (refusing to run the guard with no rails)"]
    if policy.allow_empty or flows or _guarded(policy):
        return []
    if any(has_output_rails(effective(policy, n).output) for n in policy.profile_names):
        return []
    return [f"{path}:1: the config defines no rails at all (input or output); {_HOW}"]


def change_errors(path: object, old: GuardPolicy, new: GuardPolicy) -> list[str]:
    """Why a reload from `old` to `new` is refused: a profile that had input rails would have none."""
    if new.allow_empty:
        return []
    lost = sorted((_guarded(old) & set(new.profile_names)) - _guarded(new))
    if not lost:
        return []
    which = "every profile" if set(lost) >= _guarded(old) and len(lost) > 1 else "profile " + ", ".join(lost)
    return [f"{path}:1: this change removes every input rail of {which}; {_HOW}"]
