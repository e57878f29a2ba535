"""Reading a rails directory: NeMo-compatible `config.yml`/`prompts.yml`/`*.co` plus our `guard.yml`.

All validation happens here, once, at load; errors name the file, the line and the key.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rails.floor import load_errors
from rails.policy import GuardPolicy
from rails.yamlsrc import SourceDoc, YamlSourceError, load_yaml

POLICY_FILE = "guard.yml"
NEMO_FILE = "config.yml"
# A directory with only NeMo files gets the guard's shipped default policy, unless its config.yml says
# `guard_policy: none` (NeMo's rails only) or names a policy file of its own.
DEFAULT_POLICY = Path(__file__).resolve().parent / "configs" / "default" / POLICY_FILE
# Flow names that our own engine implements; any other flow (or a dialog rail) needs NeMo's LLMRails.
OWN_FLOWS = frozenset({"guard check input", "guard check output"})
_HASHED = ("*.yml", "*.yaml", "*.co", "*.py", "*.md")
_DIALOG = re.compile(r"^\s*define\s+user\s", re.M)


class RailsConfigError(ValueError):
    """A rails directory is invalid. The message names file, line and key."""


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")  # NeMo owns these files and adds keys between versions


class _NemoModel(_Loose):
    type: str
    engine: str | None = None
    model: str | None = None


class _FlowList(_Loose):
    flows: list[str] = Field(default_factory=list)


class _NemoRails(_Loose):
    input: _FlowList = Field(default_factory=_FlowList)
    output: _FlowList = Field(default_factory=_FlowList)
    dialog: dict[str, Any] | None = None


class _NemoInstruction(_Loose):
    type: str
    content: str


class NemoConfig(_Loose):
    """The parts of NeMo's `config.yml` we read or check the shape of."""

    models: list[_NemoModel] = Field(default_factory=list)
    instructions: list[_NemoInstruction] = Field(default_factory=list)
    rails: _NemoRails = Field(default_factory=_NemoRails)
    prompts: list[dict[str, Any]] = Field(default_factory=list)
    colang_version: str = "1.0"
    guard_policy: str | None = None  # ours; NeMo ignores unknown top-level keys


@dataclass(slots=True)
class RailsDir:
    path: Path
    policy: GuardPolicy
    nemo: NemoConfig
    rails_hash: str
    colang_files: list[Path] = field(default_factory=list)
    policy_source: str = POLICY_FILE  # which policy is in force, for `guard rails check`

    @property
    def needs_nemo(self) -> bool:
        """True when the directory uses Colang flows or dialog rails that only NeMo's runtime can run."""
        flows = set(self.nemo.rails.input.flows) | set(self.nemo.rails.output.flows)
        if flows - OWN_FLOWS or self.nemo.rails.dialog:
            return True
        return any(_DIALOG.search(p.read_text(encoding="utf-8")) for p in self.colang_files)


def read_rails_dir(path: Path) -> RailsDir:
    path = Path(path)
    if not path.is_dir():
        raise RailsConfigError(f"{path}: not a directory")
    nemo = NemoConfig()
    if (path / NEMO_FILE).is_file():
        nemo = validate_doc(NemoConfig, load_doc(path / NEMO_FILE))
    for extra in sorted(path.glob("prompts.y*ml")):
        validate_doc(_PromptsFile, load_doc(extra))
    colang = sorted(path.rglob("*.co"))
    policy, source, extra_hash, doc = _policy(path, nemo, has_nemo_files=bool(colang) or (path / NEMO_FILE).is_file())
    spec = RailsDir(path, policy, nemo, rails_hash(path, extra_hash), colang, source)
    if doc is not None:
        errors = load_errors(doc.path, doc.data, policy, flows=spec.needs_nemo)
        if errors:
            raise RailsConfigError("\n".join(errors))
    return spec


def _policy(path: Path, nemo: NemoConfig, *, has_nemo_files: bool) -> tuple[GuardPolicy, str, bytes, SourceDoc | None]:
    """The policy in force, where it came from, bytes to hash when it lives elsewhere, and its file."""
    own = path / POLICY_FILE
    if own.is_file():
        if nemo.guard_policy is not None:
            raise RailsConfigError(f"{path / NEMO_FILE}: guard_policy: conflicts with {own} (keep one of them)")
        doc = load_doc(own, empty_ok=False)
        return validate_doc(GuardPolicy, doc), POLICY_FILE, b"", doc
    if not has_nemo_files:
        raise RailsConfigError(
            f"{own}: missing (a rails directory needs a {POLICY_FILE}, or NeMo's {NEMO_FILE} and Colang files)"
        )
    choice = nemo.guard_policy or "default"
    if choice == "none":
        return GuardPolicy(), "none (config.yml guard_policy: none; NeMo's rails only)", b"none", None
    file = DEFAULT_POLICY if choice == "default" else path / choice
    if not file.is_file():
        raise RailsConfigError(
            f"{path / NEMO_FILE}: guard_policy: {choice!r} is neither default, none nor a policy file in the directory"
        )
    why = "no guard.yml" if nemo.guard_policy is None else "config.yml guard_policy"
    label = (
        f"default ({why}; the shipped {DEFAULT_POLICY.parent.name}/{POLICY_FILE})"
        if choice == "default"
        else f"{choice} (config.yml guard_policy)"
    )
    doc = load_doc(file, empty_ok=False)
    return validate_doc(GuardPolicy, doc), label, file.read_bytes(), doc


class _PromptsFile(_Loose):
    prompts: list[dict[str, Any]] = Field(default_factory=list)


def rails_hash(path: Path, extra: bytes = b"") -> str:
    """Stable hash of the config files' names and bytes (not their timestamps)."""
    h = hashlib.sha256(extra)
    files = sorted({p for pattern in _HASHED for p in path.rglob(pattern) if p.is_file()})
    for p in files:
        if "__pycache__" in p.parts or p.name == "cases.yml":
            continue  # test cases do not change behaviour
        h.update(p.relative_to(path).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def load_doc(path: Path, empty_ok: bool = True) -> SourceDoc:
    try:
        doc = load_yaml(path)
    except YamlSourceError as exc:
        raise RailsConfigError(str(exc)) from None
    if doc.data is None:
        if not empty_ok:
            raise RailsConfigError(f"{path}:1: the file is empty (refusing to run the guard with no rails)")
        doc.data = {}
    if not isinstance(doc.data, dict):
        raise RailsConfigError(f"{path}:1: the top level must be a mapping")
    return doc


_M = TypeVar("_M", bound=BaseModel)


def validate_doc(model: type[_M], doc: SourceDoc) -> _M:
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        raise RailsConfigError(format_errors(doc, exc)) from None


def format_errors(doc: SourceDoc, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if p != "[key]")
        # Pydantic appends the tag of a union/literal member or the key marker; keep only real path parts.
        loc = _real_path(doc, loc)
        key = ".".join(str(p) for p in loc) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{doc.path}:{doc.line_of(loc)}: {key}: {msg}")
    return "\n".join(lines)


def _real_path(doc: SourceDoc, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    data, out = doc.data, []
    for part in loc:
        in_dict = isinstance(data, dict) and part in data
        if in_dict or (isinstance(data, list) and isinstance(part, int) and part < len(data)):
            data = data[part]
        elif isinstance(data, dict | list):
            if part in ("function-after", "function-before") or str(part).startswith("literal["):
                continue
            if isinstance(data, dict) and part == 0:
                continue  # a single rule written where a list of tiers is allowed
            out.append(part)  # a missing key: name it, point at its parent
            break
        else:
            break
        out.append(part)
    return tuple(out)
