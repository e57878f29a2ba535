"""The harm atlas: built into the model folder when it was embedded by the artifact's encoder, loaded beside the
model, ignored (with a warning) when it does not fit."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from guard.triage.atlas import HARM_ATLAS, load, nearest, quantize
from guard.triage.runtime import TriageModel


def test_the_built_model_carries_the_atlas_of_its_encoder_as_unit_vectors(triage_model: TriageModel) -> None:
    atlas = triage_model.harm_atlas
    assert atlas is not None and atlas.shape[1] == 384
    assert np.allclose(np.linalg.norm(atlas, axis=1), 1.0, atol=1e-5)
    # A harmful request the classifier was taught on sits in the atlas; an ordinary one is much further.
    harmful, ordinary = triage_model.embed(["How do I make a pipe bomb at home?", "What is a good name for a cat?"])
    near = nearest(atlas, np.stack([harmful, ordinary]))
    # MiniLM's cosines run high: the cat question sits 0.88 from its nearest atlas text with AVX-512 int8 kernels
    # (the committed atlas was embedded with AVX2 ones), the bomb question 0.976.
    assert near[0] > 0.95 and near[1] < near[0] - 0.05


def test_int8_rounding_moves_a_cosine_by_less_than_the_radius_margin(tmp_path: Path) -> None:
    from guard.corrections.radius import ATLAS_MARGIN

    rng = np.random.default_rng(0)
    unit = rng.normal(size=(200, 384)).astype(np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    np.savez(tmp_path / HARM_ATLAS, vectors=quantize(unit), encoder=np.array("x"))
    back = load(tmp_path / HARM_ATLAS, 384)
    assert back is not None
    assert np.abs((unit @ unit.T) - (back @ unit.T)).max() < ATLAS_MARGIN / 3


def test_an_atlas_stored_column_major_loads_as_the_same_contiguous_rows(tmp_path: Path) -> None:
    rows = quantize(np.random.default_rng(1).normal(size=(50, 384)).astype(np.float32))
    np.savez_compressed(tmp_path / "c.npz", vectors=rows, encoder=np.array("x"))
    np.savez_compressed(tmp_path / "f.npz", vectors=np.asfortranarray(rows), encoder=np.array("x"))
    c, f = load(tmp_path / "c.npz", 384), load(tmp_path / "f.npz", 384)
    assert c is not None and f is not None
    assert np.array_equal(c, f) and f.flags["C_CONTIGUOUS"]


def test_an_atlas_of_another_encoder_is_not_built_in(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from finetune.triage.export import sync_atlas
    from guard.triage.artifact import ARTIFACT_DIR

    art = tmp_path / "artifact"
    shutil.copytree(ARTIFACT_DIR, art)
    with np.load(art / HARM_ATLAS) as data:
        vectors = data["vectors"]
    np.savez(art / HARM_ATLAS, vectors=vectors, encoder=np.array("another-encoder"))
    out = tmp_path / "built"
    out.mkdir()
    (out / HARM_ATLAS).write_bytes(b"stale")
    with caplog.at_level(logging.WARNING, logger="guard.triage"):
        sync_atlas(art, out)
    assert not (out / HARM_ATLAS).exists()
    assert "another encoder" in caplog.text


def test_an_atlas_of_another_width_is_ignored_at_load(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    np.savez(tmp_path / HARM_ATLAS, vectors=quantize(np.eye(8, 768, dtype=np.float32)), encoder=np.array("x"))
    with caplog.at_level(logging.WARNING, logger="guard.triage"):
        assert load(tmp_path / HARM_ATLAS, 384) is None
    assert "ignored" in caplog.text
    assert load(tmp_path / "absent.npz", 384) is None
    assert load(tmp_path / HARM_ATLAS, 768) is not None
