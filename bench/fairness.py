"""Fairness: what a concurrent huge prompt adds to a small request's latency.

One run starts a fast fixed-answer upstream (`proxy_overhead.py serve-upstream`) and the guard with the triage
classifier (int8 ONNX from GUARD_TRIAGE_MODEL or var/triage) and, unless `--rails`, no rails: nothing refuses
the huge prompt early, so the classifier meets all of it (with the shipped rails the length rail refuses it
before the classifier runs). Then, in interleaved rounds:
  alone   one client sends the small prompt back to back
  loaded  the same, while another client sends the huge prompt back to back
and reports the medians over rounds of the small request's p50/p99 in each, the p50 the huge prompt adds,
the huge request's own p50, and the texts the classifier scored per huge request (its window budget).

    python bench/fairness.py [--big-kb 1000] [--duration 5] [--rounds 3] [--rails]

Prints a Markdown table and writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TRIAGE_MODEL = Path(os.environ.get("GUARD_TRIAGE_MODEL", HERE.parent / "var" / "triage")).resolve()
SMALL = {"model": "bench-model", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
FILLER = "The committee reviewed the quarterly figures and agreed to meet again next week. "


def serve(port: int, upstream: str, rails: bool) -> None:
    import uvicorn

    from guard.app import create_app
    from guard.settings import Settings

    settings = Settings(
        home=Path(tempfile.mkdtemp(prefix="guard-fairness-")),
        upstream_url=upstream,
        triage_model=TRIAGE_MODEL,
        rails_enabled=rails,
        rails_reload=False,
        record_enabled=False,
        max_body_bytes=1_100_000,
        log_level="warning",
    )
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, workers=1, log_level="warning", access_log=False)


@contextlib.contextmanager
def servers(rails: bool) -> Iterator[str]:
    from proxy_overhead import free_port, wait_ready

    procs: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        up_port, guard_port = free_port(), free_port()
        cmd = [sys.executable, str(HERE / "proxy_overhead.py"), "serve-upstream", str(up_port)]
        procs.append(subprocess.Popen(cmd, env=env))
        wait_ready(f"http://127.0.0.1:{up_port}/v1/chat/completions")
        up = f"http://127.0.0.1:{up_port}/v1"
        cmd = [sys.executable, __file__, "serve", str(guard_port), up, *(["--rails"] if rails else [])]
        procs.append(subprocess.Popen(cmd, env=env))
        base = f"http://127.0.0.1:{guard_port}"
        wait_ready(f"{base}/v1/chat/completions", timeout_s=120)
        yield base
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


def scored_texts(base: str) -> float:
    """Texts the classifier has scored so far (the sum of its batch sizes)."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("guard_triage_batch_size_sum"):
                return float(line.split()[-1])
    return 0.0


async def measure(base: str, big: bytes | None, duration: float) -> dict[str, float]:
    import aiohttp

    url = f"{base}/v1/chat/completions"
    small = json.dumps(SMALL).encode()
    headers = {"content-type": "application/json"}
    small_ms: list[float] = []
    big_ms: list[float] = []
    stop_at = time.perf_counter() + duration

    async def loop(session: aiohttp.ClientSession, body: bytes, into: list[float]) -> None:
        while (t0 := time.perf_counter()) < stop_at:
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"status {resp.status}")
            into.append((time.perf_counter() - t0) * 1e3)

    before = scored_texts(base)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        jobs = [loop(session, small, small_ms)]
        if big is not None:
            jobs.append(loop(session, big, big_ms))
        await asyncio.gather(*jobs)
    texts = scored_texts(base) - before
    small_ms.sort()
    out = {
        "small_p50_ms": statistics.median(small_ms),
        "small_p99_ms": small_ms[int(len(small_ms) * 0.99)],
        "small_requests": len(small_ms),
    }
    out["texts"] = texts
    if big is not None and big_ms:
        out |= {"big_p50_ms": statistics.median(big_ms), "big_requests": len(big_ms)}
    return out


def run(big_kb: int, duration: float, rounds: int, rails: bool) -> dict[str, Any]:
    content = (FILLER * (big_kb * 1000 // len(FILLER) + 1))[: big_kb * 1000]
    big = json.dumps({**SMALL, "messages": [{"role": "user", "content": content}]}).encode()
    samples: dict[str, list[dict[str, float]]] = {"alone": [], "loaded": []}
    load_avg = []
    with servers(rails) as base:
        asyncio.run(measure(base, None, 1.0))  # warm-up
        for _ in range(rounds):
            load_avg.append(os.getloadavg()[0])
            samples["alone"].append(asyncio.run(measure(base, None, duration)))
            samples["loaded"].append(asyncio.run(measure(base, big, duration)))

    # The small request's own texts (its prompt, and its answer when output rules score it), from the rounds alone.
    per_small = statistics.median(s["texts"] / s["small_requests"] for s in samples["alone"])
    for s in samples["loaded"]:
        s["texts_per_big_request"] = (s["texts"] - per_small * s["small_requests"]) / s["big_requests"]

    def med(kind: str, key: str) -> float:
        return round(statistics.median(s[key] for s in samples[kind] if key in s), 2)

    return {
        "big_kb": big_kb,
        "rails": rails,
        "duration_s": duration,
        "rounds": rounds,
        "load_average": [round(x, 1) for x in load_avg],
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "alone": {k: med("alone", k) for k in ("small_p50_ms", "small_p99_ms")},
        "loaded": {
            k: med("loaded", k)
            for k in ("small_p50_ms", "small_p99_ms", "big_p50_ms", "big_requests", "texts_per_big_request")
        },
        "added_p50_ms": round(med("loaded", "small_p50_ms") - med("alone", "small_p50_ms"), 2),
        "samples": samples,
    }


def table(r: dict[str, Any]) -> str:
    a, lo = r["alone"], r["loaded"]
    return "\n".join(
        [
            "| small p50 alone | small p50 with a concurrent huge prompt | added p50 | small p99 alone / loaded "
            "| huge prompt p50 | texts scored per huge prompt |",
            "|---|---|---|---|---|---|",
            f"| {a['small_p50_ms']} ms | {lo['small_p50_ms']} ms | +{r['added_p50_ms']} ms "
            f"| {a['small_p99_ms']} / {lo['small_p99_ms']} ms | {lo['big_p50_ms']} ms "
            f"| {lo['texts_per_big_request']} |",
        ]
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]), sys.argv[3], "--rails" in sys.argv[4:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big-kb", type=int, default=1000, help="size of the huge prompt's text in kB")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rails", action="store_true", help="the shipped rails (their length rail refuses it)")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    result = run(args.big_kb, args.duration, args.rounds, args.rails)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"fairness-{int(time.time())}.json"
    out.write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"load average per round: {result['load_average']}; JSON: {out}")


if __name__ == "__main__":
    main()
