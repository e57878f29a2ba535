"""The override memory against a real store (SQLite and Postgres) and the real classifier's embedding: exact
nearest-neighbour search, per-tenant scopes, retirement by a classifier version, and re-embedding when the
classifier's embedding changes size."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from records_support import make_record
from sqlalchemy import Engine

from guard.corrections.index import FULL_SCAN_BELOW, OverrideIndex
from guard.corrections.memory import CorrectionMemory
from guard.records import Message
from guard.store.db import insert_records, insert_review
from guard.store.overrides import active_overrides, retire_overrides

# A harmless question the shipped classifier (v17) flags as crime.
TEXT = "How can I get into my own car if I locked the keys inside?"


def _anisotropic(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Unit vectors crowded around one direction, as sentence embeddings are (unrelated cosines near 0.8)."""
    common = rng.normal(size=dim)
    v = rng.normal(size=(n, dim)) + 2.5 * common / np.linalg.norm(common) * np.sqrt(dim) / 3
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_the_pruned_search_finds_exactly_what_a_full_scan_finds() -> None:
    rng = np.random.default_rng(7)
    vectors = _anisotropic(rng, 3 * FULL_SCAN_BELOW, 384)
    index = OverrideIndex(vectors, threshold=0.95)
    assert index.basis is not None  # large enough to use the bound
    near = vectors[rng.integers(0, len(vectors), 200)] + rng.normal(scale=0.01, size=(200, 384)).astype(np.float32)
    queries = np.concatenate([near, _anisotropic(rng, 200, 384)])
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    hits = 0
    for q in queries:
        sims = vectors @ q
        best = int(sims.argmax())
        expected = (best, float(sims[best])) if sims[best] >= 0.95 else None
        got = index.nearest(q)
        assert (got is None) == (expected is None)
        if got is not None and expected is not None:
            hits += 1
            assert got[0] == expected[0] and abs(got[1] - expected[1]) < 1e-5
    assert hits >= 200  # every near copy matched; unrelated vectors did not
    assert index.nearest(np.ones(128, dtype=np.float32)) is None  # another encoder's vector matches nothing


def _flagged(engine: Engine, tenant: str) -> str:
    rec = make_record(0, tenant=tenant, flags=("blocked_input",))
    rec.messages = [Message(role="user", content=TEXT)]
    rec.triage_scores, rec.triage_labels = {"crime": 0.99, "refusal": 0.1}, ["crime"]
    insert_records(engine, [rec])
    return rec.exchange_id


def _memory(engine: Engine, embed: Any, version: str, **kw: Any) -> CorrectionMemory:
    return CorrectionMemory(engine, embed, version, threshold=0.97, refresh_s=3600, max_per_tenant=100, **kw)


def test_overrides_apply_to_their_tenant_only_and_retire_when_a_classifier_version_gets_them_right(
    engine: Engine, triage_model: Any
) -> None:
    outcome = insert_review(engine, _flagged(engine, "acme"), "false_positive", reviewer="ann")
    memory = _memory(engine, triage_model.embed, triage_model.version)
    asyncio.run(memory.refresh())
    result = triage_model.predict([TEXT.replace("I locked", "I've locked")])[0]
    assert "crime" in result.labels
    corrected = memory.correct("acme", result)
    assert corrected is not None
    triage, match = corrected
    assert (
        triage.labels == () and triage.scores["crime"] == 0.0 and triage.scores["refusal"] == result.scores["refusal"]
    )
    assert (match.review_id, match.label, match.classifier_labels) == (outcome.review_id, "false_positive", ("crime",))
    assert memory.correct("globex", result) is None

    assert retire_overrides(engine, [outcome.override_id or 0], "triage-v17") == 1
    assert active_overrides(engine) == []
    asyncio.run(memory.refresh())
    assert memory.correct("acme", result) is None and memory.active == 0


def _wide_embed(texts: list[str]) -> np.ndarray:
    """A classifier with a 768-wide embedding (a retrained one): a fixed vector per text."""
    rows = [np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)).normal(size=768) for t in texts]
    out = np.asarray(rows, dtype=np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_a_classifier_with_another_embedding_size_embeds_the_reviewed_texts_again(
    engine: Engine, triage_model: Any
) -> None:
    insert_review(engine, _flagged(engine, "acme"), "false_positive", reviewer="ann")
    old = _memory(engine, triage_model.embed, triage_model.version)
    asyncio.run(old.refresh())
    cached = active_overrides(engine)[0]
    assert cached.embedding_version == triage_model.version and cached.embedding is not None

    new = _memory(engine, _wide_embed, "triage-768")
    asyncio.run(new.refresh())
    assert active_overrides(engine)[0].embedding_version == "triage-768"
    result = triage_model.predict([TEXT])[0]
    assert new.correct("acme", result) is None  # a 384-wide vector cannot match the 768-wide memory
    wide = replace(result, embedding=_wide_embed([cached.text])[0], version="triage-768")
    corrected = new.correct("acme", wide)
    assert corrected is not None and corrected[1].similarity > 0.999


def test_a_classifier_version_retires_the_overrides_it_already_gets_right_and_keeps_the_others(
    engine: Engine, triage_model: Any
) -> None:
    from guard.corrections.retire import retire_settled

    wrong = insert_review(engine, _flagged(engine, "acme"), "false_positive", reviewer="ann")
    rec = make_record(1, tenant="acme", flags=("blocked_input",))
    rec.messages = [Message(role="user", content="What's a good recipe for banana bread?")]
    rec.triage_scores = triage_model.predict(["What's a good recipe for banana bread?"])[0].scores
    insert_records(engine, [rec])
    right = insert_review(engine, rec.exchange_id, "correct", reviewer="ann")
    assert retire_settled(engine, triage_model) == 1
    assert [o.id for o in active_overrides(engine)] == [wrong.override_id]  # still flagged by the model
    assert right.override_id not in {o.id for o in active_overrides(engine)}


def test_after_a_classifier_swap_each_request_is_matched_against_the_vectors_of_the_version_that_scored_it(
    engine: Engine, triage_model: Any, triage_model_dir: Path, tmp_path: Path
) -> None:
    from guard.triage.runtime import TriageModel

    insert_review(engine, _flagged(engine, "acme"), "false_positive", reviewer="ann")
    memory = _memory(engine, triage_model.embed, triage_model.version)
    asyncio.run(memory.refresh())
    renamed = tmp_path / "next"
    shutil.copytree(triage_model_dir, renamed)
    cfg = json.loads((renamed / "triage.json").read_text())
    (renamed / "triage.json").write_text(json.dumps({**cfg, "version": "triage-next"}))
    new_model = TriageModel.load(renamed, device="cpu")

    asyncio.run(memory.retarget(new_model))
    assert memory.version == "triage-next" and memory.active == 1
    assert active_overrides(engine)[0].embedding_version == "triage-next"  # embedded by the new version
    paraphrase = TEXT.replace("I locked", "I've locked")
    assert memory.correct("acme", new_model.predict([paraphrase])[0]) is not None
    assert memory.correct("acme", triage_model.predict([paraphrase])[0]) is not None  # a request still running
    foreign = replace(triage_model.predict([paraphrase])[0], version="triage-unknown")
    assert memory.correct("acme", foreign) is None  # no vectors of that version: nothing to compare with


def test_the_pruned_search_admits_rows_whose_own_radius_is_below_the_global_threshold() -> None:
    rng = np.random.default_rng(11)
    vectors = _anisotropic(rng, 3 * FULL_SCAN_BELOW, 384)
    radii = np.where(np.arange(len(vectors)) % 2 == 0, 0.90, 0.97).astype(np.float32)
    index = OverrideIndex(vectors, threshold=0.97, radii=radii)
    assert index.basis is not None
    queries = vectors[:400] + rng.normal(scale=0.02, size=(400, 384)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    reached_low = 0
    for q in queries:
        sims = vectors @ q
        within = sims >= radii
        expected = int(np.where(within, sims, -np.inf).argmax()) if within.any() else None
        got = index.nearest(q)
        assert (got[0] if got else None) == expected
        reached_low += expected is not None and sims[expected] < 0.97
    assert reached_low > 50  # matches only a radius of 0.90 allows were found


def test_with_the_classifiers_harm_atlas_a_benign_review_reaches_as_far_as_no_harmful_text_sits(
    engine: Engine, triage_model: Any
) -> None:
    from guard.corrections.radius import atlas_radii
    from guard.triage.atlas import nearest

    atlas = triage_model.harm_atlas
    assert atlas is not None and len(atlas) > 10_000  # the shipped build carries its atlas
    outcome = insert_review(engine, _flagged(engine, "acme"), "false_positive", reviewer="ann")
    memory = _memory(engine, triage_model.embed, triage_model.version, atlas=atlas, reach=0.91)
    asyncio.run(memory.refresh())
    review = triage_model.embed([TEXT])[0]
    radius = memory.reaches()[outcome.override_id or 0]
    assert radius == float(atlas_radii(nearest(atlas, review[None]), 0.91)[0])
    # Not the global 0.97: the atlas sets it (classifier v18: a harmful text at ~0.937, so 0.967). Further from
    # 0.97 than the probes below, so they tell the atlas's radius from the global threshold.
    assert abs(radius - 0.97) > 0.002
    result = triage_model.predict([TEXT])[0]
    # Vectors at a chosen cosine from the reviewed text, in a direction of their own.
    side = np.random.default_rng(3).normal(size=review.shape).astype(np.float32)
    side -= (side @ review) * review
    side /= np.linalg.norm(side)
    at = lambda cos: replace(result, embedding=(cos * review + np.sqrt(1 - cos**2) * side).astype(np.float32))  # noqa: E731
    assert memory.correct("acme", at(radius + 0.002)) is not None
    assert memory.correct("acme", at(radius - 0.002)) is None


def test_a_benign_override_leaves_a_request_the_classifier_scored_far_under_every_threshold_unmatched(
    engine: Engine, triage_model: Any
) -> None:
    insert_review(engine, _flagged(engine, "acme"), "false_positive", reviewer="ann")
    memory = _memory(engine, triage_model.embed, triage_model.version)
    asyncio.run(memory.refresh())
    result = triage_model.predict([TEXT])[0]
    assert memory.correct("acme", result) is not None
    # The same vector with every score under half its threshold: no rail acts on it, so nothing is overridden.
    quiet = {k: (0.4 * result.thresholds[k] if k in result.thresholds else v) for k, v in result.scores.items()}
    assert memory.correct("acme", replace(result, scores=quiet, labels=())) is None
