"""Fit the factorised heads on an encoder's served embeddings, calibrate them, and write the artifact.

Used by every recipe (`guard triage train`) and on its own (`guard triage refit`):
1. The encoder (MiniLM as published, or tuned by a `lora`/`full` run) is built to int8 ONNX as it will serve.
2. Every text's windows are embedded once by it (`features.WindowCache`, cached across runs).
3. The heads are fitted on the training rows' first windows (`heads.fit_heads`): seconds.
4. Calibration and test scores apply the heads to every window of a text and take the max, as serving does, so
   the thresholds hold for the int8, windowed model that runs in the proxy.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from finetune.triage.export import build
from finetune.triage.features import WindowCache
from finetune.triage.heads import HeadConfig, HeadData, Heads, fit_heads
from finetune.triage.model import encoder_state, save_heads_artifact
from finetune.triage.modelcard import write_model_card
from finetune.triage.scoring import calibrate_uniform, quality_targets
from guard import __version__
from guard.taxonomy import INPUT_LABELS
from guard.triage.artifact import ARTIFACT_CONFIG, EXPORT_VERSION, base_model_dir
from guard.triage.runtime import TriageModel

EMBEDDING_DIM = 384


def encoder_id(encoder: dict[str, torch.Tensor], max_len: int, stride: int) -> str:
    """Names the served encoder (not the heads): base weights, tuned weights, export contract, windowing."""
    weights = base_model_dir() / "model.safetensors"
    h = hashlib.sha256(
        f"{EXPORT_VERSION}:{weights.stat().st_size if weights.exists() else 0}:{max_len}:{stride}".encode()
    )
    for name in sorted(encoder):
        h.update(name.encode())
        h.update(encoder[name].float().numpy().tobytes())
    return h.hexdigest()[:16]


def head_data(rows: list[dict], emb: np.ndarray, synth_weight: float) -> HeadData:
    labels = np.array([[lab in r["labels"] for lab in INPUT_LABELS] for r in rows], dtype=np.int64)
    is_resp = np.array([r.get("kind") == "response" for r in rows])
    synth = np.array([r["source"].startswith("synth:") for r in rows])
    # Public answer sets are labelled for refusal only: a compliant answer to a harmful request is not benign.
    labelled = ~is_resp | synth
    return HeadData(
        emb=emb,
        labels=labels,
        labelled=labelled,
        is_response=is_resp,
        refusal=np.array([int(bool(r.get("refusal"))) for r in rows], dtype=np.int64),
        weight=np.where(synth, synth_weight, 1.0).astype(np.float64),
    )


def served_scores(heads: Heads, windows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Label probabilities [N, L] and refusal probability [N]: the max over each text's windows, as served."""
    owners = np.repeat(np.arange(len(windows)), [len(w) for w in windows])
    with torch.no_grad():
        lab, ref = heads(torch.from_numpy(np.concatenate(windows)))
    lab_p, ref_p = torch.sigmoid(lab).numpy(), torch.sigmoid(ref).numpy()
    probs = np.zeros((len(windows), lab_p.shape[1]), dtype=np.float32)
    refusal = np.zeros(len(windows), dtype=np.float32)
    np.maximum.at(probs, owners, lab_p)
    np.maximum.at(refusal, owners, ref_p)
    return probs, refusal


def budgets_of(train_cfg: dict) -> tuple[float, float, float]:
    return (
        float(train_cfg.get("fpr_budget", 0.05)),
        float(train_cfg.get("attack_fpr_budget", 0.03)),
        float(train_cfg.get("look_alike_fpr_budget", 0.08)),
    )


@dataclass
class Embedded:
    """What the heads see: first windows of the rows they learn from, every window of the rows they are scored on."""

    first: np.ndarray
    windows: dict[str, list[np.ndarray]]


def embed(
    encoder_dir: Path, fit_rows: list[dict], scored: dict[str, list[dict]], *, cache_dir: Path | None, threads: int
) -> Embedded:
    """Embeddings by the encoder of `encoder_dir` as it serves (int8 ONNX), through the cache."""
    config = json.loads((encoder_dir / ARTIFACT_CONFIG).read_text())
    encoder = encoder_state(encoder_dir)
    with tempfile.TemporaryDirectory(prefix="triage-encoder-") as tmp:
        # Empty heads: the built model's `embedding` output is the encoder's, whatever the heads are.
        save_heads_artifact(Heads(EMBEDDING_DIM), encoder, {**config, "head_hidden": 256}, Path(tmp) / "art")
        build(Path(tmp) / "art", Path(tmp) / "onnx", force=True)
        model = TriageModel.load(Path(tmp) / "onnx", threads=threads)
        cache = WindowCache(model, encoder_id(encoder, config["max_len"], config["stride"]), cache_dir)
        first = cache.first([r["text"] for r in fit_rows])
        windows = {name: cache.windows([r["text"] for r in rows]) for name, rows in scored.items()}
    return Embedded(first, windows)


def fit_calibrated(
    fit_rows: list[dict],
    calib: list[dict],
    emb: Embedded,
    train_cfg: dict,
    ceilings: dict[str, dict[str, float]] | None = None,
) -> tuple[Heads, dict[str, float]]:
    """Heads fitted on `fit_rows`, thresholds from their served scores on `calib` (`emb.windows["calib"]`), each
    calib benign population flagged at most at its `ceilings` rate (`scoring.calibrate_uniform`)."""
    head_cfg = HeadConfig(
        hidden=int(train_cfg.get("head_hidden", 256)),
        epochs=int(train_cfg.get("head_epochs", 12)),
        seed=int(train_cfg.get("seed", 13)),
    )
    weights = np.array([float(r.get("weight", 1.0)) for r in fit_rows])
    data = head_data(fit_rows, emb.first, float(train_cfg.get("synth_weight", 1.0)))
    data.weight = data.weight * weights
    heads = fit_heads(data, head_cfg)
    thresholds = calibrate_uniform(
        calib, *served_scores(heads, emb.windows["calib"]), budgets_of(train_cfg), ceilings=ceilings
    )
    return heads, thresholds


def refit(
    encoder_dir: Path,
    split: dict[str, list[dict]],
    out_dir: Path,
    *,
    train_cfg: dict,
    cache_dir: Path | None,
    threads: int,
) -> dict:
    """Heads for the encoder in `encoder_dir`, fitted on `train`, calibrated on `calib`, measured on `test`."""
    t0 = time.time()
    emb = embed(
        encoder_dir, split["train"], {s: split[s] for s in ("calib", "test")}, cache_dir=cache_dir, threads=threads
    )
    embed_s = time.time() - t0
    heads, thresholds = fit_calibrated(split["train"], split["calib"], emb, train_cfg)
    metrics = quality_targets(split["test"], *served_scores(heads, emb.windows["test"]), list(INPUT_LABELS), thresholds)
    config = json.loads((encoder_dir / ARTIFACT_CONFIG).read_text())
    config.update(
        version=f"{__version__}+triage.{time.strftime('%Y%m%d')}",
        embedding_dim=EMBEDDING_DIM,
        head_hidden=int(train_cfg.get("head_hidden", 256)),
        thresholds=thresholds,
        train={**config.get("train", {}), **train_cfg, "heads_embed_seconds": round(embed_s, 1)},
    )
    save_heads_artifact(heads, encoder_state(encoder_dir), config, out_dir)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def write_frozen_encoder(config: dict, out_dir: Path) -> None:
    """The `frozen` recipe's encoder artifact: MiniLM as published (no tuned weights) and empty heads."""
    save_heads_artifact(Heads(EMBEDDING_DIM), {}, {**config, "recipe": "frozen", "lora": None}, out_dir)


def finish(out_dir: Path, manifest: dict, metrics: dict) -> None:
    config = json.loads((out_dir / ARTIFACT_CONFIG).read_text())
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    write_model_card(out_dir, config, manifest, metrics)
