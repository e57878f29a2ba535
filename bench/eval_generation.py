"""Gate evaluation generation: the old settings (48 new tokens, batches of 8 in suite order) against the new ones
(40 new tokens, batches of 16 sorted by length, each answer stopped after its first sentence), same prompts,
interleaved in rounds.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python bench/eval_generation.py [--per-kind 8] [--rounds 2]
        [--configs old,new] [--threads 1]   (configs: old, new, new-b32, new-b8, new-32, new-2proc,
        new-2thr)

Prompts: the first N of each built gate suite (benign_scary, benign_ordinary, harmful); the local SmolLM2 model
(`guard models prepare`). Prints seconds per round and the median ratio new / old.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from finetune.generate import LocalLM, generate_in_processes  # noqa: E402
from finetune.suitebuild import build  # noqa: E402
from guard.backends.prepare import prepare_default_model  # noqa: E402
from guard.settings import load_settings  # noqa: E402

SETTINGS = {
    "old": {"max_new_tokens": 48, "batch_size": 8},
    "new": {"max_new_tokens": 40, "batch_size": 16, "first_sentence": True},
    "new-b32": {"max_new_tokens": 40, "batch_size": 32, "first_sentence": True},
    "new-b8": {"max_new_tokens": 40, "batch_size": 8, "first_sentence": True},
    "new-32": {"max_new_tokens": 32, "batch_size": 16, "first_sentence": True},  # the default since 2026-12-07
    # Two cores: two processes sharing the batches (EvalOptions.workers; their start-up is in the time), or one
    # process with two torch threads.
    "new-2proc": {"max_new_tokens": 40, "batch_size": 16, "first_sentence": True, "workers": 2},
    "new-2thr": {"max_new_tokens": 40, "batch_size": 16, "first_sentence": True, "threads": 2},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-kind", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--configs", default="old,new", help=f"compared, the first is the baseline: {', '.join(SETTINGS)}")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    settings = load_settings()
    suites, _ = build(settings.datasets_dir)
    rows = [r for k in ("benign_scary", "benign_ordinary", "harmful") for r in suites[k][: a.per_kind]]
    random.Random(0).shuffle(rows)
    convs = [[{"role": "user", "content": r["prompt"]}] for r in rows]
    lm = LocalLM(prepare_default_model(settings).path, threads=a.threads)
    names = a.configs.split(",")
    times: dict[str, list[float]] = {}
    for rnd in range(a.rounds):
        for name in names:
            kw = dict(SETTINGS[name])
            workers, threads = int(kw.pop("workers", 1)), int(kw.pop("threads", a.threads))
            torch.set_num_threads(threads)
            t0 = time.perf_counter()
            if workers > 1:
                generate_in_processes(lm.path, convs, workers=workers, threads=a.threads, **kw)
            else:
                lm.generate(convs, **kw)  # type: ignore[arg-type]
            torch.set_num_threads(a.threads)
            times.setdefault(name, []).append(time.perf_counter() - t0)
            print(f"round {rnd} {name}: {times[name][-1]:.1f} s", flush=True)
    base = statistics.median(times[names[0]])
    for name in names:
        med = statistics.median(times[name])
        print(f"{len(convs)} prompts: {name} median {med:.1f} s, {name} / {names[0]} {med / base:.2f}")


if __name__ == "__main__":
    main()
