"""The synthetic generator's data lives in YAML beside its modules; the rows it draws must not move with it."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from finetune.triage.data import _load

ROOT = Path(__file__).resolve().parents[2]
# The rows for seed 13 at scale 150, drawn in a fresh interpreter, hashed as the generator drew them before its
# lists moved to YAML. Two values because docs.py reads stdlib docstrings at run time and importing torch drops a
# paragraph (see docs.py): `train` draws after torch is loaded, a bare interpreter without it.
DRAW_ROWS = """
import hashlib, json, random
from finetune.triage.data.broad import broad_rows
from finetune.triage.data.synth import style, synth_answers, synth_prompts
rng = random.Random(13)
rows = synth_prompts(rng, 150) + synth_answers(rng, 1200) + broad_rows(random.Random("13:broad"), 150, style)
print(hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest())
"""
SHIPPED_ROWS_SHA256 = {
    "bare": "052de0210559110f096e8922ef95f9d860a104729077f29907e94811c711accc",
    "after_torch": "cd9536a76762d8ceecd9e42dae57c38e0db609ba3713e46da503866bccc10df0",
}
# YAML in the folder that is not a generator module's data
NOT_GENERATOR_DATA = {"sources", "exclusions", "answer_review", "hate_review"}  # source mapping and reviews
# modules that are not the generator: the public-source mapping and the dataset assembly
NOT_GENERATOR_CODE = {"sources.py", "build.py"}
GENERATOR_YAML = sorted(p.stem for p in _load.HERE.glob("*.yml") if p.stem not in NOT_GENERATOR_DATA)


@pytest.mark.parametrize("interpreter", sorted(SHIPPED_ROWS_SHA256))
def test_the_generator_still_draws_the_rows_the_shipped_classifier_was_trained_on(interpreter: str) -> None:
    prelude = ""
    if interpreter == "after_torch":
        if importlib.util.find_spec("torch") is None:
            pytest.skip("torch is not installed (the train extra)")
        prelude = "import torch\n"
    path = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    out = subprocess.run(
        [sys.executable, "-c", prelude + DRAW_ROWS], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == SHIPPED_ROWS_SHA256[interpreter]


def _as_loaded(value: object) -> object:
    if isinstance(value, tuple | list):
        return [_as_loaded(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_loaded(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize("module", GENERATOR_YAML)
def test_every_entry_of_a_generator_yaml_is_exported_by_its_module(module: str) -> None:
    mod = importlib.import_module(f"finetune.triage.data.{module}")
    data = _load.load(module)
    assert data, f"{module}.yml is empty"
    for name, value in data.items():
        assert _as_loaded(getattr(mod, name)) == value, f"{module}.{name} differs from {module}.yml"


def test_the_generator_modules_keep_no_literal_lists_of_their_own() -> None:
    offenders = []
    for path in sorted(p for p in _load.HERE.glob("*.py") if p.name not in NOT_GENERATOR_CODE):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.List | ast.Dict):
                try:
                    ast.literal_eval(node.value)
                except ValueError:
                    continue
                offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders
