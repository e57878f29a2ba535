"""Record storage benchmarks.

write   sustained write rate through the real write path (RecordWriter: queue -> batch insert), to SQLite and
        to Postgres, with realistic exchanges (system + user messages, triage scores, rail decisions, PII
        masking by `rails.pii.mask`). Rate = exchanges / (first record() -> all committed). Target >= 2,000/s.
proxy   the proxy benchmark (bench/proxy_overhead.py's upstream and load generator) with recording off, on at
        the default sample rate (0.05 of clean exchanges; flagged ones are always kept) and on for every
        exchange (1.0, the worst case), all in the same run, interleaved rounds, medians. Records go to SQLite.
        Target: p50 latency ratio on/off <= 1.05.

    python bench/records.py [write|proxy|all] [--n 20000] [--rounds 3] [--duration 4]

Prints Markdown and writes JSON to bench/results/.
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
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.append(str(HERE))
RESULTS = HERE / "results"
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

# Write rate -----------------------------------------------------------------------------------------------


def make_exchanges(n: int) -> list[Any]:
    from guard.domain import Message
    from guard.pipeline import Exchange, RailDecision, TriageResult

    labels = [
        "benign",
        "violence",
        "self_harm",
        "sexual",
        "hate",
        "weapons",
        "drugs",
        "cyber",
        "fraud",
        "jailbreak",
        "prompt_injection",
        "medical_advice",
    ]
    out = []
    for i in range(n):
        messages = [
            Message("system", "You are a helpful support assistant for ACME routers. " * 3),
            Message.user(
                f"Hi, I'm Jane (jane.doe{i}@example.com, +1 415 555 0{i % 1000:03d}). "
                "My router keeps dropping the connection every evening, what can I do?"
            ),
        ]
        ex = Exchange(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            tenant=f"tenant-{i % 8}",
            messages=messages,
            model="smollm2-135m-instruct",
            profile="support",
            api_key_hash="3f2a9c0d1e5b7a64",
            model_version="v3",
            rails_hash="9a8b7c6d",
        )
        ex.triage = TriageResult(
            scores={lab: (i * 7 + k) % 100 / 100 for k, lab in enumerate(labels)}, labels=("violence",)
        )
        ex.decisions = [
            RailDecision(
                rail=f"rail_{k}", stage="input" if k < 2 else "output", result="pass", score=0.1 * k, latency_s=0.0004
            )
            for k in range(4)
        ]
        answer = "Try updating the firmware and moving the router away from the microwave. " * 2
        ex.response_text = ex.model_text = answer
        ex.finish_reason = "stop"
        ex.flags = {"unsafe_compliance"}  # flagged: always stored (no sampling in the measurement)
        ex.timings = {"triage": 0.002, "input_rails": 0.001, "model": 0.4, "output_rails": 0.001, "total": 0.41}
        out.append(ex)
    return out


def _mask() -> Any:
    try:
        from rails.pii import mask
    except ImportError:
        return None
    return mask


@contextlib.contextmanager
def database(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="guard-bench-db-") as tmp:
            yield f"sqlite:///{tmp}/guard.db"
        return
    import psycopg

    schema = f"gt_bench_{uuid.uuid4().hex[:10]}"
    conninfo = "host=127.0.0.1 port=5432 user=postgres dbname=test"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def write_once(kind: str, exchanges: list[Any], mask: Any) -> dict[str, float]:
    from guard.store.db import make_engine, upgrade
    from guard.store.query import count_records
    from guard.store.writer import RecordWriter

    with database(kind) as url, tempfile.TemporaryDirectory(prefix="guard-bench-spool-") as spool:
        engine = make_engine(url)
        upgrade(engine)
        writer = RecordWriter(engine, spool_dir=Path(spool), queue_size=len(exchanges) + 1, batch_size=512, mask=mask)
        writer.start_thread()
        t0 = time.perf_counter()
        for ex in exchanges:
            writer.record(ex)
        enqueue_s = time.perf_counter() - t0
        assert writer.flush(600), "writer did not finish"
        elapsed = time.perf_counter() - t0
        writer.close()
        stored = count_records(engine)
        engine.dispose()
    assert stored == len(exchanges), f"{stored} of {len(exchanges)} stored"
    return {
        "rate_per_s": len(exchanges) / elapsed,
        "elapsed_s": elapsed,
        "record_call_us": enqueue_s / len(exchanges) * 1e6,
        "stored": stored,
    }


def run_write(n: int, rounds: int) -> dict[str, Any]:
    mask = _mask()
    exchanges = make_exchanges(n)
    result: dict[str, Any] = {"n": n, "rounds": rounds, "pii_mask": bool(mask), "samples": {}}
    for kind in ("sqlite", "postgres"):
        samples = []
        for r in range(rounds):
            for ex in exchanges:  # fresh ids: each round writes new records
                ex.id = f"chatcmpl-{uuid.uuid4().hex}"
            samples.append(write_once(kind, exchanges, mask))
            print(f"write {kind} round {r + 1}: {samples[-1]}", file=sys.stderr)
        result["samples"][kind] = samples
        result[kind] = {k: statistics.median(s[k] for s in samples) for k in ("rate_per_s", "record_call_us")}
    return result


# Proxy with recording on vs off -----------------------------------------------------------------------------


# Recording off; on at the default sample rate; on for every exchange; off again (an A/A control: how far
# two identical servers disagree on this machine, i.e. the noise floor of the comparison).
TARGETS = {"off": None, "default": 0.05, "all": 1.0, "off_again": None}


def serve_guard(port: int, upstream: str, home: str, target: str) -> None:
    import uvicorn

    from guard.app import create_app
    from guard.settings import Settings

    rate = TARGETS[target]
    settings = Settings(
        home=Path(home),
        upstream_url=upstream,
        triage_enabled=False,
        rails_enabled=False,
        record_enabled=rate is not None,
        record_sample_rate=rate or 0.0,
        log_level="warning",
    )
    app = create_app(settings)
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with inner(app):
            print(
                json.dumps({"recorder": type(app.state.resources.pipeline.recorder).__name__, "sample_rate": rate}),
                flush=True,
            )
            yield

    app.router.lifespan_context = lifespan
    uvicorn.run(app, host="127.0.0.1", port=port, workers=1, log_level="warning", access_log=False)


def run_proxy(duration: float, rounds: int) -> dict[str, Any]:
    import proxy_overhead as po

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs: list[subprocess.Popen[str]] = []
    homes = {t: tempfile.mkdtemp(prefix=f"guard-bench-{t}-") for t in TARGETS}
    body = json.dumps(po.PROMPT).encode()
    samples: dict[str, list[dict[str, float]]] = {}
    info: dict[str, Any] = {}
    try:
        up_port = po.free_port()
        procs.append(subprocess.Popen([sys.executable, po.__file__, "serve-upstream", str(up_port)], env=env))
        upstream = f"http://127.0.0.1:{up_port}/v1"
        po.wait_ready(f"{upstream}/chat/completions")
        urls, pids = {}, {}
        for target in TARGETS:
            port = po.free_port()
            proc = subprocess.Popen(
                [sys.executable, __file__, "serve-guard", str(port), upstream, homes[target], target],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            procs.append(proc)
            pids[target] = proc.pid
            assert proc.stdout is not None
            info[target] = json.loads(proc.stdout.readline())
            urls[target] = f"http://127.0.0.1:{port}/v1/chat/completions"
            po.wait_ready(urls[target])
        for target in urls:
            po.load(urls[target], body, 4, 1)
        names = list(TARGETS)
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]  # rotate to spread drift
            for conc in (1, 16):
                for target in order:
                    key = f"{conc}|{target}"
                    cpu0 = _cpu_s(pids[target])
                    sample = po.load(urls[target], body, conc, duration)
                    # The proxy process's own CPU (all threads, writer included) per request: robust on a
                    # shared machine where latency also measures the neighbours.
                    sample["cpu_us_per_req"] = (_cpu_s(pids[target]) - cpu0) / (sample["rps"] * duration) * 1e6
                    samples.setdefault(key, []).append(sample)
                    print(f"proxy round {r + 1} {key}: {samples[key][-1]}", file=sys.stderr)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
    stored = {t: _count(f"sqlite:///{homes[t]}/guard.db") for t in ("default", "all")}
    med = {
        k: {m: statistics.median(s[m] for s in v) for m in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req")}
        for k, v in samples.items()
    }
    ratios = {
        f"{conc}|{t}": {
            "p50_on_off": med[f"{conc}|{t}"]["p50_ms"] / med[f"{conc}|off"]["p50_ms"],
            "rps_on_off": med[f"{conc}|{t}"]["rps"] / med[f"{conc}|off"]["rps"],
            "cpu_on_off": med[f"{conc}|{t}"]["cpu_us_per_req"] / med[f"{conc}|off"]["cpu_us_per_req"],
        }
        for conc in (1, 16)
        for t in ("default", "all", "off_again")
    }
    return {
        "medians": med,
        "ratios": ratios,
        "samples": samples,
        "servers": info,
        "records_stored": stored,
        "duration_s": duration,
        "rounds": rounds,
        "load_avg": os.getloadavg(),
    }


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _count(url: str) -> int:
    from guard.store.db import make_engine
    from guard.store.query import count_records

    engine = make_engine(url)
    try:
        return count_records(engine)
    finally:
        engine.dispose()


# Report -----------------------------------------------------------------------------------------------------


def report(result: dict[str, Any]) -> str:
    lines = []
    if "write" in result:
        w = result["write"]
        lines += [
            f"Write path, {w['n']} exchanges per round, {w['rounds']} rounds, medians "
            f"(PII masking {'on' if w['pii_mask'] else 'off'}):",
            "",
            "| database | exchanges/s | record() cost µs |",
            "|---|---|---|",
        ]
        lines += [f"| {k} | {w[k]['rate_per_s']:.0f} | {w[k]['record_call_us']:.1f} |" for k in ("sqlite", "postgres")]
    if "proxy" in result:
        p = result["proxy"]
        lines += [
            "",
            f"Proxy (no triage/rails), recording off vs on, {p['rounds']} interleaved rounds of "
            f"{p['duration_s']:g} s, medians; records stored: {p['records_stored']}",
            "",
            "| conc | recording | p50 ms | p99 ms | req/s | proxy CPU µs/req | p50 vs off | req/s vs off | "
            "CPU/req vs off |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for conc in (1, 16):
            for t in TARGETS:
                m = p["medians"][f"{conc}|{t}"]
                r = p["ratios"].get(f"{conc}|{t}", {"p50_on_off": 1.0, "rps_on_off": 1.0, "cpu_on_off": 1.0})
                label = t.replace("_", " ") if TARGETS[t] is None else f"on, sample rate {TARGETS[t]}"
                lines.append(
                    f"| {conc} | {label} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {m['rps']:.0f} | "
                    f"{m['cpu_us_per_req']:.0f} | {r['p50_on_off']:.3f} | {r['rps_on_off']:.3f} | "
                    f"{r['cpu_on_off']:.3f} |"
                )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve-guard":
        port, upstream, home, target = sys.argv[2:6]
        serve_guard(int(port), upstream, home, target)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", choices=("write", "proxy", "all"), default="all")
    parser.add_argument("--n", type=int, default=20_000, help="exchanges per write round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per proxy measurement")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    result: dict[str, Any] = {}
    if args.what in ("write", "all"):
        result["write"] = run_write(args.n, args.rounds)
    if args.what in ("proxy", "all"):
        result["proxy"] = asyncio.run(asyncio.to_thread(run_proxy, args.duration, args.rounds))
    print(report(result))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"records-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"\nJSON: {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
