"""Build the gate's default suites from public data sets that nothing in the loop trains on.

`finetune/suites/sources.yml` names the sources per kind (benign_scary, benign_ordinary, harmful, general).
A source the triage classifier trains or calibrates on is refused (its role in finetune/triage/data/sources.yml),
and a prompt the pair builder's traffic contains is dropped, so a candidate is never graded on what shaped it.
The manifest hashes every source file, the spec and each suite: two reports compare only with equal hashes.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from finetune.config import ConfigError

SUITE_SPEC = Path(__file__).resolve().parent / "suites" / "sources.yml"
KINDS = ("benign_scary", "benign_ordinary", "harmful", "general")
HELD_OUT_ROLES = frozenset({"test", "skip"})  # triage roles whose files it never fits on


class _Take(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str
    take: int = Field(ge=1)
    where: dict[str, str] = Field(default_factory=dict)
    single_turn: bool = False  # general: one user turn and its chosen answer (preference rows)


class SuiteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seed: int = 0
    max_chars: int = Field(700, ge=20)
    kinds: dict[str, list[_Take]]

    def sources(self) -> set[str]:
        return {t.source for takes in self.kinds.values() for t in takes}


def load_spec(path: Path = SUITE_SPEC) -> SuiteSpec:
    try:
        spec = SuiteSpec.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such suite spec") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"{path}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    if unknown := set(spec.kinds) - set(KINDS):
        raise ConfigError(f"{path}: kinds: unknown {sorted(unknown)} (use {', '.join(KINDS)})")
    return spec


def training_sources() -> set[str]:
    """Data sets the triage classifier trains or calibrates on (in whole or in part)."""
    from finetune.triage.data.sources import source_table

    out = set()
    for name, src in source_table().items():
        roles = {src.role, *(src.roles_by.values.values() if src.roles_by else ())}
        if roles - HELD_OUT_ROLES:
            out.add(name)
    return out


def check_sources(spec: SuiteSpec, path: Path = SUITE_SPEC) -> None:
    if used := sorted(spec.sources() & training_sources()):
        raise ConfigError(f"{path}: {', '.join(used)}: the triage classifier trains on it; a gate suite may not")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _rows(path: Path, take: _Take, max_chars: int) -> list[dict[str, str]]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            raw = json.loads(line) if line.strip() else None
            if raw is None or any(str(raw.get(k)) != v for k, v in take.where.items()):
                continue
            if take.single_turn:
                msgs = raw.get("prompt_messages") or []
                if len(msgs) == 1 and raw.get("chosen"):
                    out.append({"prompt": msgs[0]["content"], "reference": raw["chosen"].strip()})
            elif len(raw.get("text", "")) <= max_chars:
                out.append({"prompt": raw["text"]})
    return [r for r in out if len(r["prompt"]) <= max_chars]


def _usable(row: dict[str, str], avoid: set[str]) -> bool:
    """Not in the pair builder's traffic; a general reference answer must not itself be a refusal."""
    from guard.refusal import shipped

    return row["prompt"] not in avoid and not ("reference" in row and shipped()(row["reference"]))


def build(datasets: Path, spec_path: Path = SUITE_SPEC) -> tuple[dict[str, list[dict[str, str]]], dict[str, Any]]:
    """The suites per kind and their manifest. ConfigError when a source is missing or a training source."""
    from finetune.traffic import KINDS as TRAFFIC_KINDS
    from finetune.traffic import prompts

    spec = load_spec(spec_path)
    check_sources(spec, spec_path)
    avoid = {p.text for k in TRAFFIC_KINDS for p in prompts(k)}
    rng = random.Random(spec.seed)
    suites: dict[str, list[dict[str, str]]] = {}
    files: dict[str, str] = {}
    for kind, takes in spec.kinds.items():
        rows: list[dict[str, str]] = []
        for take in takes:
            path = Path(datasets) / f"{take.source}.jsonl"
            if not path.is_file():
                raise ConfigError(f"{spec_path}: {take.source}: no {path}")
            files.setdefault(take.source, _sha(path.read_bytes()))
            seen = {r["prompt"] for r in rows}
            pool = [r for r in _rows(path, take, spec.max_chars) if r["prompt"] not in seen and _usable(r, avoid)]
            pool = list({r["prompt"]: r for r in pool}.values())
            rows += rng.sample(pool, min(take.take, len(pool)))
        suites[kind] = rows
    return suites, manifest(suites, spec_path, files)


def manifest(suites: dict[str, list[dict[str, str]]], spec_path: Path | None, files: dict[str, str]) -> dict[str, Any]:
    kinds = {k: {"n": len(rows), "sha256": _sha(_jsonl(rows).encode())} for k, rows in suites.items()}
    body = {
        "spec_sha256": _sha(Path(spec_path).read_bytes()) if spec_path else None,
        "source_files": dict(sorted(files.items())),
        "suites": kinds,
    }
    return body | {"hash": _sha(json.dumps(body, sort_keys=True).encode())[:16]}


def _jsonl(rows: list[dict[str, str]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def write(suites: dict[str, list[dict[str, str]]], meta: dict[str, Any], out: Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for kind, rows in suites.items():
        (out / f"{kind}.jsonl").write_text(_jsonl(rows), encoding="utf-8")
    (out / "manifest.json").write_text(json.dumps(meta, indent=2))
    return out
