"""The frozen recipe's heads, window cache and served scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from guard.taxonomy import ATTACKS, HARMFUL, INPUT_LABELS
from guard.triage.runtime import TriageModel

torch = pytest.importorskip("torch")

from finetune.triage.heads import HeadData, Heads, _joint_logit, fit_heads  # noqa: E402
from finetune.triage.refit import served_scores  # noqa: E402

H = len(HARMFUL)


def test_a_harmful_label_scores_any_harm_times_its_category() -> None:
    any_logit = torch.tensor([[0.7], [-2.0]])
    cat = torch.randn(2, H)
    p = torch.sigmoid(_joint_logit(any_logit, cat))
    expected = torch.sigmoid(any_logit) * torch.softmax(cat, dim=1)
    assert torch.allclose(p, expected, atol=1e-6)
    # The group's union can never fire above what the any-harm score allows.
    assert bool((p.max(dim=1).values <= torch.sigmoid(any_logit).squeeze(1) + 1e-6).all())


def _clusters(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Benign rows around one centre, each harmful category and each attack label around its own."""
    centres = rng.normal(size=(1 + H + len(ATTACKS), 32))
    which = rng.integers(0, len(centres), size=n)
    emb = centres[which] + 0.3 * rng.normal(size=(n, 32))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = np.zeros((n, len(INPUT_LABELS)), dtype=np.int64)
    for i, k in enumerate(which):
        if k > 0:
            labels[i, k - 1] = 1
    return emb.astype(np.float32), labels


def test_fitted_heads_separate_groups_and_name_the_category() -> None:
    rng = np.random.default_rng(0)
    emb, labels = _clusters(rng, 3000)
    n = len(emb)
    data = HeadData(
        emb=emb,
        labels=labels,
        labelled=np.ones(n, dtype=bool),
        is_response=rng.random(n) < 0.3,
        refusal=labels[:, :H].any(axis=1).astype(np.int64),  # any learnable refusal signal will do
        weight=np.ones(n),
    )
    heads = fit_heads(data)
    test_emb, test_labels = _clusters(np.random.default_rng(0), 3000)  # same centres: same seed
    with torch.no_grad():
        logits, _ = heads(torch.from_numpy(test_emb))
    probs = torch.sigmoid(logits).numpy()
    harmful = test_labels[:, :H].any(axis=1)
    assert probs[harmful, :H].max(axis=1).min() > 0.5
    assert probs[~harmful, :H].max(axis=1).max() < 0.5
    assert (probs[harmful, :H].argmax(axis=1) == test_labels[harmful, :H].argmax(axis=1)).mean() > 0.99


def test_a_group_absent_from_the_data_never_fires() -> None:
    rng = np.random.default_rng(1)
    emb, labels = _clusters(rng, 800)
    labels[:, H : H + len(ATTACKS)] = 0  # an adaptation set with no attack rows
    n = len(emb)
    data = HeadData(emb, labels, np.ones(n, bool), np.zeros(n, bool), np.zeros(n, np.int64), np.ones(n))
    heads = fit_heads(data)
    with torch.no_grad():
        logits, _ = heads(torch.from_numpy(emb))
    assert float(torch.sigmoid(logits[:, H : H + len(ATTACKS)]).max()) < 1e-6


def test_served_scores_take_each_texts_maximum_over_its_windows() -> None:
    heads = Heads(4, hidden=4).eval()
    with torch.no_grad():
        for p in heads.parameters():
            p.zero_()
        heads.body[0].weight[0, 0] = 1.0  # the first coordinate passes through the hidden layer
        heads.any_harm.weight[0, 0] = 20.0  # and decides harm
    quiet, loud = np.array([[0.0, 1, 0, 0]], np.float32), np.array([[1.0, 0, 0, 0]], np.float32)
    probs, _ = served_scores(heads, [np.concatenate([quiet, loud, quiet]), quiet])
    assert probs[0, :H].sum() > 0.99  # the loud middle window carries the first text
    assert probs[1, :H].sum() < 0.51


def test_window_cache_keeps_embeddings_across_runs(triage_model: TriageModel, tmp_path: Path) -> None:
    from finetune.triage.features import WindowCache

    texts = ["what is an index fund", "a long text " * 200]
    first = WindowCache(triage_model, "enc", tmp_path).windows(texts)
    assert len(first[0]) == 1 and len(first[1]) > 1  # the long text has several windows
    again = WindowCache(triage_model, "enc", tmp_path)
    assert len(again._store) == 2  # read back from disk, not recomputed
    for a, b in zip(first, again.windows(texts), strict=True):
        assert np.allclose(a, b)
    assert WindowCache(triage_model, "enc", tmp_path).first(texts).shape == (2, first[0].shape[1])
