"""Does ONNX Runtime's BERT fusion pass speed up the served int8 triage model? One interleaved run.

    OMP_NUM_THREADS=1 python bench/triage_fusion.py [--model-dir var/triage]

Fuses the built fp32 graph (`onnxruntime.transformers.optimizer`: Attention, SkipLayerNorm, BiasGelu), quantises
it as `guard triage build` does, checks fp32 parity, then times a 32-token prompt at 1 thread (p50/p99) and
batches of 32 at 2 threads against the shipped int8 model. The build does not fuse: this run said why.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from guard.triage.artifact import MODEL_FP32, MODEL_INT8  # noqa: E402


def session(path: Path, threads: int) -> object:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def fuse_and_quantise(fp32: Path, out: Path) -> tuple[Path, Path, dict]:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    model = optimize_model(str(fp32), model_type="bert", num_heads=12, hidden_size=384, opt_level=1)
    fused32, fused8 = out / "fused.fp32.onnx", out / "fused.int8.onnx"
    model.save_model_to_file(str(fused32))
    # The fused contrib ops defeat shape inference; tell the quantiser the activations are float.
    quantize_dynamic(
        str(fused32),
        str(fused8),
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return fused32, fused8, {k: v for k, v in model.get_fused_operator_statistics().items() if v}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", type=Path, default=ROOT / "var" / "triage")
    ap.add_argument("--runs", type=int, default=300)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 20000, (1, 32))
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    batch = {k: np.repeat(v, 32, 0) for k, v in feed.items()}
    with tempfile.TemporaryDirectory() as tmp:
        fused32, fused8, stats = fuse_and_quantise(a.model_dir / MODEL_FP32, Path(tmp))
        print("fused operators:", stats)
        ref, fus = session(a.model_dir / MODEL_FP32, 1).run(None, feed), session(fused32, 1).run(None, feed)
        diffs = [float(np.abs(x - y).max()) for x, y in zip(ref, fus, strict=True)]
        print("fp32 parity, max |diff| per output:", diffs)
        paths = {"int8 (shipped)": a.model_dir / MODEL_INT8, "int8 fused": fused8}
        one = {k: session(p, 1) for k, p in paths.items()}
        times: dict[str, list[float]] = {k: [] for k in one}
        for _ in range(6):  # interleaved rounds: background load hits both alike
            for k, s in one.items():
                for _ in range(a.runs // 6):
                    t0 = time.perf_counter()
                    s.run(None, feed)
                    times[k].append(time.perf_counter() - t0)
        for k, p in paths.items():
            s = session(p, 2)
            s.run(None, batch)
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < 4:
                s.run(None, batch)
                n += 32
            ms = np.array(times[k]) * 1000
            print(
                f"{k}: p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms (1 thread); "
                f"{n / (time.perf_counter() - t0):.0f} prompts/s (batch 32, 2 threads)"
            )


if __name__ == "__main__":
    main()
