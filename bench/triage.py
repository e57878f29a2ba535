"""Triage classifier speed, one run: PyTorch eager vs ONNX fp32 vs ONNX int8, plus the micro-batcher.

- latency: one 32-token prompt, 1 thread, configurations interleaved in rounds, p50/p99 (ms);
- throughput: batches of 32 x 32-token prompts at 2 threads (prompts/s);
- micro-batcher: 16 concurrent callers through `TriageStage` (int8) vs the same callers unbatched.

    python bench/triage.py [--runs 300] [--rounds 6] [--seconds 4] [--model-dir var/triage]

Builds the model first if needed (`guard triage build`). Prints Markdown, writes bench/results/triage.json.
Targets (issue 3): int8 p50 <= 3 ms at 1 thread; >= 500 prompts/s batched on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from finetune.triage.export import build  # noqa: E402
from guard.triage.artifact import ARTIFACT_DIR, MODEL_FP32, MODEL_INT8  # noqa: E402
from guard.triage.runtime import TriageModel  # noqa: E402

WORDS = [
    "please",
    "summarise",
    "the",
    "main",
    "causes",
    "of",
    "the",
    "french",
    "revolution",
    "for",
    "my",
    "history",
    "class",
    "in",
    "a",
    "few",
    "short",
    "points",
]


def prompt_of(model: TriageModel, n_tokens: int = 32) -> tuple[str, list[int]]:
    """A prompt that is exactly `n_tokens` tokens including [CLS] and [SEP]."""
    words: list[str] = []
    i = 0
    while len(model._tok.encode(" ".join(words)).ids) < n_tokens:
        words.append(WORDS[i % len(WORDS)])
        i += 1
    text = " ".join(words)
    ids = model._tok.encode(text).ids
    assert len(ids) == n_tokens, len(ids)
    return text, ids


def percentiles(samples: list[float]) -> dict[str, float]:
    a = np.array(samples) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3)}


def latency(fns: dict[str, Callable[[], object]], runs: int, rounds: int) -> dict[str, dict[str, float]]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        for _ in range(10):
            fn()  # warm-up
    for _ in range(rounds):  # interleave, so background load hits every configuration alike
        for name, fn in fns.items():
            for _ in range(runs // rounds):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {k: percentiles(v) for k, v in times.items()}


def throughput(fns: dict[str, Callable[[], object]], batch: int, seconds: float) -> dict[str, float]:
    out = {}
    for name, fn in fns.items():
        fn()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            fn()
            n += batch
        out[name] = round(n / (time.perf_counter() - t0), 1)
    return out


def torch_fns(ids: list[int], batch: int) -> tuple[Callable[[], object], Callable[[], object], Callable[[int], None]]:
    import torch

    from finetune.triage.model import load_artifact

    model, _ = load_artifact(ARTIFACT_DIR, merge=True)
    one = torch.tensor([ids])
    many = one.repeat(batch, 1)

    def run(x: torch.Tensor) -> Callable[[], object]:
        def f() -> object:
            with torch.inference_mode():
                return model(x, torch.ones_like(x))

        return f

    return run(one), run(many), torch.set_num_threads


async def batcher_load(model: TriageModel, text: str, callers: int, seconds: float, max_batch: int) -> dict:
    from guard.triage.stage import TriageStage

    stage = TriageStage(model, max_batch=max_batch, max_wait_ms=2.0 if max_batch > 1 else 0.0)
    await stage.start()
    lat: list[float] = []
    stop = time.perf_counter() + seconds

    async def caller() -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            await stage.score_text(text)
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    elapsed = time.perf_counter() - t0
    await stage.aclose()
    return {"requests_per_s": round(len(lat) / elapsed, 1), **percentiles(lat)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--model-dir", type=Path, default=ROOT / "var" / "triage")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch eager")
    args = ap.parse_args()
    build(ARTIFACT_DIR, args.model_dir)

    m1 = {
        k: TriageModel.load(args.model_dir, device="cpu", threads=1, model_file=f)
        for k, f in (("onnx_fp32", MODEL_FP32), ("onnx_int8", MODEL_INT8))
    }
    m2 = {
        k: TriageModel.load(args.model_dir, device="cpu", threads=2, model_file=f)
        for k, f in (("onnx_fp32", MODEL_FP32), ("onnx_int8", MODEL_INT8))
    }
    text, ids = prompt_of(m1["onnx_int8"])
    one = {k: (lambda m=m: m._run([ids])) for k, m in m1.items()}
    one["onnx_int8_predict"] = lambda: m1["onnx_int8"].predict([text])  # tokenise + run + thresholds
    many = {k: (lambda m=m: m._run([ids] * args.batch)) for k, m in m2.items()}
    results: dict = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}",
        "prompt_tokens": len(ids),
        "batch": args.batch,
    }
    if not args.no_torch:
        t_one, t_many, set_threads = torch_fns(ids, args.batch)
        set_threads(1)
        results["latency_1_thread"] = latency({"torch_eager": t_one, **one}, args.runs, args.rounds)
        set_threads(2)
        results["throughput_2_threads"] = throughput({"torch_eager": t_many, **many}, args.batch, args.seconds)
    else:
        results["latency_1_thread"] = latency(one, args.runs, args.rounds)
        results["throughput_2_threads"] = throughput(many, args.batch, args.seconds)
    lat = results["latency_1_thread"]
    if "torch_eager" in lat:
        results["speedup_p50_vs_torch"] = {
            k: round(lat["torch_eager"]["p50_ms"] / v["p50_ms"], 2) for k, v in lat.items() if k != "torch_eager"
        }
    int8_2 = TriageModel.load(args.model_dir, device="cpu", threads=2)
    results["batcher_16_callers_int8_2_threads"] = {
        "micro_batched": asyncio.run(batcher_load(int8_2, text, 16, args.seconds, 32)),
        "unbatched": asyncio.run(batcher_load(int8_2, text, 16, args.seconds, 1)),
    }
    results["load_after"] = round(os.getloadavg()[0], 1)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "triage.json").write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))


def markdown(r: dict) -> str:
    lines = [
        f"Triage bench ({r['machine']}; {r['prompt_tokens']}-token prompt)",
        "",
        "| config | p50 ms (1 thread) | p99 ms | batch prompts/s (2 threads) |",
        "|---|---|---|---|",
    ]
    for name, v in r["latency_1_thread"].items():
        tp = r["throughput_2_threads"].get(name, "")
        lines.append(f"| {name} | {v['p50_ms']} | {v['p99_ms']} | {tp} |")
    if "speedup_p50_vs_torch" in r:
        lines.append(f"\np50 speed-up over PyTorch eager: {r['speedup_p50_vs_torch']}")
    b = r["batcher_16_callers_int8_2_threads"]
    lines += ["", "| 16 concurrent callers (int8, 2 threads) | requests/s | p50 ms | p99 ms |", "|---|---|---|---|"]
    for name, v in b.items():
        lines.append(f"| {name} | {v['requests_per_s']} | {v['p50_ms']} | {v['p99_ms']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
