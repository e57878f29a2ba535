"""ONNX triage model at serving time. Imports only onnxruntime, tokenizers and numpy (never torch).

Long texts are split into overlapping windows of `max_len` tokens; label and refusal scores are the max over
windows (an attack anywhere is seen), the embedding is the renormalised mean of the window embeddings.

Dynamic int8 quantises each run's activations with one scale per tensor, so a text's scores move with its
batch-mates (v16: by up to 0.06). Decisions must not: a text scored within `RESCORE_BAND` of any threshold is scored
again on its own, and that score decides. Its own windows are then its whole batch, so the result depends on the
text alone; one far from every threshold cannot cross one by a batch-mate's shift smaller than the band.
`scores` always hold every input label and "refusal". `labels` holds the input labels over threshold;
"refusal" joins them only for model answers (`predict(..., outputs=True)`), never for user inputs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from guard.errors import GuardError
from guard.pipeline import TriageResult
from guard.taxonomy import REFUSAL, labels_over
from guard.triage import atlas
from guard.triage.artifact import MODEL_INT8, RUNTIME_CONFIG, TOKENIZER

log = logging.getLogger(__name__)
MAX_WINDOWS_PER_RUN = 64
# In log-odds: int8 noise is about even there, while in probability a fixed band is wide at 0.5 and empty near
# 0 or 1. 1.0 is about 2x the largest batch-composition shift measured (v16: 0.54 in log-odds, 0.06 in
# probability, a prompt next to a 600-token document); 19 % of held-out texts fall in the band and are re-scored.
RESCORE_BAND = 1.0


class TriageModelError(GuardError):
    """The built triage model is missing or unreadable; the message names the file."""

    status = 503
    type = "server_error"
    code = "triage_unavailable"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: np.ndarray | np.floating) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _providers(device: str) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        log.warning("triage: CUDAExecutionProvider not available (have %s); using CPU", available)
    return ["CPUExecutionProvider"]


class TriageModel:
    def __init__(self, session: Any, tokenizer: Any, config: dict, device: str) -> None:
        self._session = session
        self._tok = tokenizer
        self.config = config
        self.device = device
        self.labels: tuple[str, ...] = tuple(config["labels"])
        self.thresholds: dict[str, float] = {k: float(v) for k, v in config["thresholds"].items()}
        self.version: str = str(config.get("version", "unknown"))
        self.max_len = int(config.get("max_len", 128))
        self.path: Path | None = None  # the built model's folder, when loaded from one
        self.harm_atlas: np.ndarray | None = None  # `guard.triage.atlas`: shipped beside the build, when it is

    @classmethod
    def load(
        cls, directory: Path, *, device: str = "auto", threads: int = 1, model_file: str = MODEL_INT8
    ) -> TriageModel:
        directory = Path(directory)
        paths = {name: directory / name for name in (RUNTIME_CONFIG, TOKENIZER, model_file)}
        for path in paths.values():
            if not path.is_file():
                raise TriageModelError(f"triage model file missing: {path} (run `guard triage build`)")
        config = _read_config(paths[RUNTIME_CONFIG])
        tokenizer = _read_tokenizer(paths[TOKENIZER], config)
        session = _open_session(paths[model_file], threads, _providers(device))
        used = session.get_providers()[0]
        model = cls(session, tokenizer, config, "cuda" if used == "CUDAExecutionProvider" else "cpu")
        model.path = directory
        dims = [o.shape[-1] for o in session.get_outputs() if o.name == "embedding"]
        if dims and isinstance(dims[0], int):
            model.harm_atlas = atlas.load(directory / atlas.HARM_ATLAS, dims[0])
        width = session.get_outputs()[0].shape[-1]
        if width != len(model.labels):
            raise TriageModelError(
                f"corrupt triage model: {paths[model_file]} has {width} outputs, "
                f"{paths[RUNTIME_CONFIG]} lists {len(model.labels)} labels"
            )
        return model

    # Inference -------------------------------------------------------------------------------------
    def scores(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per text: label probabilities [N, L], refusal probability [N], embedding [N, H]; max over windows."""
        owners, windows = self._windows(texts)
        probs, refusal, emb = self._score_windows(owners, windows, len(texts))
        if len(texts) > 1:
            for t in self._near_thresholds(probs, refusal):
                alone = [w for w, o in zip(windows, owners, strict=True) if o == t]
                p, r, e = self._score_windows([0] * len(alone), alone, 1)
                probs[t], refusal[t], emb[t] = p[0], r[0], e[0]
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        return probs, refusal, emb / np.maximum(norms, 1e-12)

    def _score_windows(
        self, owners: list[int], windows: list[list[int]], n: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        probs = np.zeros((n, len(self.labels)), dtype=np.float32)
        refusal = np.zeros(n, dtype=np.float32)
        emb = np.zeros((n, 0), dtype=np.float32)
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))  # similar lengths pad less
        for k in range(0, len(order), MAX_WINDOWS_PER_RUN):
            chunk = order[k : k + MAX_WINDOWS_PER_RUN]
            lab, ref, vec = self._run([windows[i] for i in chunk])
            if emb.shape[1] == 0:
                emb = np.zeros((n, vec.shape[1]), dtype=np.float32)
            for row, w in enumerate(chunk):
                t = owners[w]
                probs[t] = np.maximum(probs[t], _sigmoid(lab[row]))
                refusal[t] = max(refusal[t], float(_sigmoid(ref[row])))
                emb[t] += vec[row]
        return probs, refusal, emb

    def _near_thresholds(self, probs: np.ndarray, refusal: np.ndarray) -> np.ndarray:
        thr = np.array([self.thresholds[lab] for lab in self.labels], dtype=np.float32)
        near = (np.abs(_logit(probs) - _logit(thr)) < RESCORE_BAND).any(axis=1)
        near |= np.abs(_logit(refusal) - _logit(np.float32(self.thresholds.get(REFUSAL, 0.5)))) < RESCORE_BAND
        return np.flatnonzero(near)

    def predict(self, texts: list[str], *, outputs: bool | list[bool] = False) -> list[TriageResult]:
        """One result per text. `outputs` (per text or for all) marks model answers: "refusal" joins `labels`."""
        flags = outputs if isinstance(outputs, list) else [outputs] * len(texts)
        probs, refusal, emb = self.scores(texts)
        results = []
        for i in range(len(texts)):
            scores = {lab: float(probs[i, j]) for j, lab in enumerate(self.labels)}
            scores[REFUSAL] = float(refusal[i])
            results.append(
                TriageResult(
                    scores=scores,
                    labels=self.over_threshold(scores, output=flags[i]),
                    embedding=emb[i],
                    device=self.device,
                    thresholds=self.thresholds,
                    version=self.version,
                )
            )
        return results

    def over_threshold(self, scores: dict[str, float], *, output: bool = False) -> tuple[str, ...]:
        return labels_over(scores, self.thresholds, self.labels, output=output)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.scores(list(texts))[2]

    def window_embeddings(self, texts: Sequence[str], *, first_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(owner of each window [W], embedding of each window [W, H]): what the heads see, for training them."""
        owners, windows = self._windows(list(texts))
        if first_only:
            keep = [i for i, o in enumerate(owners) if i == 0 or owners[i - 1] != o]
            owners, windows = [owners[i] for i in keep], [windows[i] for i in keep]
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        emb: np.ndarray | None = None
        for k in range(0, len(order), MAX_WINDOWS_PER_RUN):
            chunk = order[k : k + MAX_WINDOWS_PER_RUN]
            vec = self._run([windows[i] for i in chunk])[2]
            if emb is None:
                emb = np.zeros((len(windows), vec.shape[1]), dtype=np.float32)
            emb[chunk] = vec
        return np.array(owners, dtype=np.int64), emb if emb is not None else np.zeros((0, 0), dtype=np.float32)

    def _windows(self, texts: list[str]) -> tuple[list[int], list[list[int]]]:
        owners: list[int] = []
        windows: list[list[int]] = []
        for i, enc in enumerate(self._tok.encode_batch([t or " " for t in texts])):
            for part in [enc, *enc.overflowing]:
                owners.append(i)
                windows.append(part.ids)
        return owners, windows

    def _run(self, windows: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        width = max(len(w) for w in windows)
        ids = np.zeros((len(windows), width), dtype=np.int64)
        mask = np.zeros((len(windows), width), dtype=np.int64)
        for row, w in enumerate(windows):
            ids[row, : len(w)] = w
            mask[row, : len(w)] = 1
        lab, ref, vec = self._session.run(None, {"input_ids": ids, "attention_mask": mask})
        return lab, ref, vec


def _read_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text())
        if not isinstance(config.get("labels"), list) or not isinstance(config.get("thresholds"), dict):
            raise ValueError("labels/thresholds missing")
        return config
    except (OSError, ValueError) as exc:
        raise TriageModelError(f"corrupt triage config {path}: {exc}") from None


def _read_tokenizer(path: Path, config: dict) -> object:
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on malformed JSON
        raise TriageModelError(f"corrupt triage tokenizer {path}: {str(exc)[:120]}") from None
    tok.no_padding()
    max_len = int(config.get("max_len", 128))
    tok.enable_truncation(max_length=max_len, stride=int(config.get("stride", 32)))
    return tok


def _open_session(path: Path, threads: int, providers: list[str]) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
        raise TriageModelError(f"corrupt triage model file {path}: {str(exc).splitlines()[0][:160]}") from None
