"""Soak: the proxy under a steady request rate for N minutes, watching for errors, latency drift and leaks.

Starts the fast fixed-answer upstream of `bench/proxy_overhead.py` and `guard serve` (1 worker) against it,
each in its own process, then sends requests open-loop at `--rate` per second (a slow proxy does not slow the
sender down; a cap on requests in flight keeps a stalled proxy from exhausting the client) for `--minutes`.
Every `--stream-every`-th request streams. The proxy runs the shipped default rails and records every
exchange to SQLite (`--sample 1`), triage off unless `--triage DIR` names a built classifier.

    python bench/soak.py --minutes 5 --rate 50

Prints one line per `--report-s` interval and a summary: requests, errors by kind, p50/p99 latency, and the
proxy's RSS and open file descriptors at the start (after warm-up) and the end. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from proxy_overhead import PROMPT, free_port, wait_ready  # noqa: E402


def proc_stats(pid: int) -> tuple[float, int]:
    """(RSS in MiB, open file descriptors) of a process, from /proc."""
    rss_kb = 0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd"))


@contextlib.contextmanager
def servers(home: Path, sample: float, triage: Path | None) -> Iterator[tuple[str, int]]:
    """Upstream and proxy processes; yields the proxy's chat URL and its pid."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    up_port, proxy_port = free_port(), free_port()
    procs = [
        subprocess.Popen([sys.executable, str(HERE / "proxy_overhead.py"), "serve-upstream", str(up_port)], env=env)
    ]
    try:
        wait_ready(f"http://127.0.0.1:{up_port}/v1/chat/completions")
        guard_env = {
            **env,
            "GUARD_HOME": str(home),
            "GUARD_PORT": str(proxy_port),
            "GUARD_LOG_LEVEL": "warning",
            "GUARD_UPSTREAM_URL": f"http://127.0.0.1:{up_port}/v1",
            "GUARD_RECORD_SAMPLE_RATE": str(sample),
            "GUARD_TRIAGE_ENABLED": "true" if triage else "false",
            "GUARD_RAILS_RELOAD": "false",
            **({"GUARD_TRIAGE_MODEL": str(triage)} if triage else {}),
        }
        procs.append(subprocess.Popen([sys.executable, "-m", "guard.cli", "serve"], env=guard_env, cwd=HERE.parent))
        url = f"http://127.0.0.1:{proxy_port}/v1/chat/completions"
        wait_ready(url)
        yield url, procs[-1].pid
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(20)


async def one(session, url: str, body: bytes, stream: bool, errors: Counter[str], lat: list[float]) -> None:
    import aiohttp

    t0 = time.perf_counter()
    try:
        async with session.post(url, data=body, headers={"content-type": "application/json"}) as resp:
            data = await resp.read()
            if resp.status != 200:
                errors[f"http_{resp.status}"] += 1
                return
            if stream and not data.rstrip().endswith(b"data: [DONE]"):
                errors["stream_without_done"] += 1
                return
    except (TimeoutError, aiohttp.ClientError) as exc:
        errors[type(exc).__name__] += 1
        return
    lat.append(time.perf_counter() - t0)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000 if len(values) > 1 else values[0]


async def soak(
    url: str, pid: int, minutes: float, rate: float, stream_every: int, report_s: float, max_in_flight: int
) -> dict[str, object]:
    import aiohttp

    plain = json.dumps(PROMPT).encode()
    streamed = json.dumps({**PROMPT, "stream": True}).encode()
    errors: Counter[str] = Counter()
    lat: list[float] = []
    reported = 0  # lat[reported:] is the current report interval
    in_flight: set[asyncio.Task[None]] = set()
    sent = skipped = 0
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=max_in_flight)) as s:
        for _ in range(20):  # warm-up, not counted
            await one(s, url, plain, False, Counter(), [])
        start_stats = proc_stats(pid)
        t0 = time.perf_counter()
        end = t0 + minutes * 60
        next_report = t0 + report_s
        i = 0
        while (now := time.perf_counter()) < end:
            due = t0 + i / rate
            if due > now:
                await asyncio.sleep(due - now)
            i += 1
            if len(in_flight) >= max_in_flight:
                skipped += 1  # the proxy is that far behind: count it, do not pile on
                errors["client_backlog"] += 1
                continue
            stream = stream_every > 0 and i % stream_every == 0
            task = asyncio.create_task(one(s, url, streamed if stream else plain, stream, errors, lat))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            sent += 1
            if time.perf_counter() >= next_report:
                rss, fds = proc_stats(pid)
                window = lat[reported:]
                reported = len(lat)
                print(
                    f"t={time.perf_counter() - t0:6.0f}s sent={sent} errors={sum(errors.values())} "
                    f"p50={_pct(window, 50):.1f}ms p99={_pct(window, 99):.1f}ms rss={rss:.1f}MiB fds={fds}",
                    flush=True,
                )
                next_report += report_s
        if in_flight:
            await asyncio.wait(in_flight, timeout=30)
        end_stats = proc_stats(pid)
    elapsed = time.perf_counter() - t0
    return {
        "sent": sent,
        "ok": len(lat),
        "errors": dict(errors),
        "achieved_rate": round(len(lat) / elapsed, 1),
        "p50_ms": round(_pct(lat, 50), 2),
        "p99_ms": round(_pct(lat, 99), 2),
        "rss_mib": [round(start_stats[0], 1), round(end_stats[0], 1)],
        "rss_growth_mib": round(end_stats[0] - start_stats[0], 1),
        "fds": [start_stats[1], end_stats[1]],
        "fd_growth": end_stats[1] - start_stats[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second (open loop)")
    parser.add_argument("--stream-every", type=int, default=4, help="every N-th request streams (0: none)")
    parser.add_argument("--sample", type=float, default=1.0, help="GUARD_RECORD_SAMPLE_RATE of the proxy")
    parser.add_argument("--triage", type=Path, default=None, help="a built triage model directory")
    parser.add_argument("--report-s", type=float, default=30.0)
    parser.add_argument("--max-in-flight", type=int, default=256)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="guard-soak-") as home,
        servers(Path(home), args.sample, args.triage) as (url, pid),
    ):
        result = asyncio.run(
            soak(url, pid, args.minutes, args.rate, args.stream_every, args.report_s, args.max_in_flight)
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
