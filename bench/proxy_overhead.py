"""Proxy overhead: what guard's pass-through pipeline costs over a bare reverse proxy on the same stack.

One run starts, each in its own process (uvicorn, 1 worker, same loop/HTTP implementation):
  upstream    a fast fixed-answer OpenAI-style API (raw aiohttp.web), plain JSON and SSE
  bare        FastAPI + aiohttp client, raw bytes passed through (the baseline, b)
  bare-httpx  the same proxy with httpx as the client (b'), to justify the client choice
  guard       `create_app` with triage, rails and recording switched off (c)
  guard-full  `create_app` as shipped: triage (int8 ONNX from GUARD_TRIAGE_MODEL or var/triage, run
              `guard triage build` first), the default rails, recording to SQLite (d)
  guard-rec   pass-through guard recording to SQLite, clean exchanges unsampled, kept in-process (e)
  guard-fleet guard-rec as a replica of a fleet: kept in Redis for feedback, and request + token rate limits
              per key in Redis (redis://127.0.0.1:6379/5, or BENCH_REDIS_URL); e vs f is their cost (f)
and measures direct calls (a) plus each proxy at 1 and 16 concurrent connections, non-streaming and
streaming. The load comes from `wrk` when installed (a separate process), else from an aiohttp load
generator in its own process. Rounds are interleaved and the medians reported.

    python bench/proxy_overhead.py [--duration 4] [--rounds 3] [--no-stream] [--targets bare,guard-rec,guard-fleet]
        [--baseline PATH]

`--baseline PATH` also serves each chosen guard target from another checkout (PATH on PYTHONPATH, e.g. `main`
unpacked with `git archive main | tar -x -C PATH`) as `<target>@base`, in the same interleaved rounds: before and
after a change, measured at the same moment.

Prints a Markdown table and writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

# Module level: FastAPI resolves the route's (string) annotations against these globals.
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TARGETS = ("direct", "bare", "bare-httpx", "guard", "guard-full", "guard-rec", "guard-fleet")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
TRIAGE_MODEL = Path(os.environ.get("GUARD_TRIAGE_MODEL", HERE.parent / "var" / "triage")).resolve()
PROMPT = {"model": "bench-model", "messages": [{"role": "user", "content": "Hello, how are you today?"}]}
ANSWER = "I am fine, thank you. How can I help you today?"
TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}
TOOL_CALL = {
    "id": "call_bench",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


# Servers (each runs in its own process: `proxy_overhead.py serve-<kind> PORT [UPSTREAM]`) -----------------


def serve_upstream(port: int) -> None:
    from aiohttp import web

    created = int(time.time())
    completion = json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": created,
            "model": "bench-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 12, "total_tokens": 19},
        }
    ).encode()

    tool_completion = json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": created,
            "model": "bench-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 7, "completion_tokens": 12, "total_tokens": 19},
        }
    ).encode()

    def frame(delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": created,
            "model": "bench-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(chunk)}\n\n".encode()

    words = re.findall(r"\S+\s*", ANSWER)
    frames = [
        frame({"role": "assistant", "content": ""}),
        *(frame({"content": w}) for w in words),
        frame({}, "stop"),
        b"data: [DONE]\n\n",
    ]

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if b'"stream": true' in body or b'"stream":true' in body:
            resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await resp.prepare(request)
            with contextlib.suppress(ConnectionResetError):  # wrk hangs up mid-stream when its time is up
                for f in frames:
                    await resp.write(f)
                await resp.write_eof()
            return resp
        tools = b'"tools"' in body  # the tool-call case: an answer that is only a tool call
        return web.Response(body=tool_completion if tools else completion, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def bare_app(upstream: str, client: str) -> Any:
    """The baseline: the least a FastAPI reverse proxy can do (bytes in, bytes out)."""
    url = f"{upstream}/chat/completions"
    headers = {"content-type": "application/json"}
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if client == "aiohttp":
            import aiohttp

            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
                state["session"] = session
                yield
        else:
            import httpx

            async with httpx.AsyncClient(limits=httpx.Limits(max_connections=256), timeout=30) as session:
                state["session"] = session
                yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.body()
        if client == "aiohttp":
            resp = await state["session"].post(url, data=body, headers=headers)
            if resp.content_type == "text/event-stream":

                async def relay() -> AsyncIterator[bytes]:
                    try:
                        async for chunk in resp.content.iter_any():
                            yield chunk
                    finally:
                        resp.release()

                return StreamingResponse(relay(), status_code=resp.status, media_type="text/event-stream")
            data = await resp.read()
            resp.release()
            return Response(data, status_code=resp.status, media_type="application/json")
        req = state["session"].build_request("POST", url, content=body, headers=headers)
        hresp = await state["session"].send(req, stream=True)
        if hresp.headers.get("content-type", "").startswith("text/event-stream"):

            async def relay_httpx() -> AsyncIterator[bytes]:
                try:
                    async for chunk in hresp.aiter_raw():
                        yield chunk
                finally:
                    await hresp.aclose()

            return StreamingResponse(relay_httpx(), status_code=hresp.status_code, media_type="text/event-stream")
        data = await hresp.aread()
        await hresp.aclose()
        return Response(data, status_code=hresp.status_code, media_type="application/json")

    return app


def guard_settings(upstream: str, home: str, kind: str) -> Any:
    from guard.settings import Settings

    if kind == "guard-full":
        return Settings(
            home=Path(home), upstream_url=upstream, triage_model=TRIAGE_MODEL, rails_reload=False, log_level="warning"
        )
    plain = {
        "home": Path(home),
        "upstream_url": upstream,
        "triage_enabled": False,
        "rails_enabled": False,
        "log_level": "warning",
    }
    if kind == "guard":
        return Settings(**plain, record_enabled=False)
    recording = {**plain, "record_sample_rate": 0.0}
    if kind == "guard-rec":
        return Settings(**recording)
    # Limits far above the load: every request pays for the checks, none is refused.
    return Settings(
        **recording, redis_url=REDIS_URL, limit_key_requests="100000000/minute", limit_key_tokens="1000000000/minute"
    )


def describe_guard(settings: Any) -> dict[str, str]:
    """Which stage implementations the benchmarked guard app actually runs."""
    from guard.resources import open_resources

    async def stages() -> dict[str, str]:
        async with open_resources(settings) as res:
            p = res.pipeline
            found = {
                name: type(getattr(p, name)).__name__ for name in ("triage", "input_rails", "output_rails", "recorder")
            }
            recent = getattr(p.recorder, "recent", None)
            return found | {"recent": type(recent).__name__, "limiter": type(res.limiter).__name__}

    return asyncio.run(stages())


def serve(kind: str, port: int, upstream: str | None) -> None:
    if kind == "upstream":
        serve_upstream(port)
        return
    import uvicorn

    assert upstream is not None
    if kind.startswith("guard"):
        from guard.app import create_app

        settings = guard_settings(upstream, tempfile.mkdtemp(prefix="guard-bench-"), kind)
        print(json.dumps({"stages": describe_guard(settings)}), flush=True)
        app = create_app(settings)
    else:
        app = bare_app(upstream, "httpx" if kind == "bare-httpx" else "aiohttp")
    uvicorn.run(app, host="127.0.0.1", port=port, workers=1, log_level="warning", access_log=False)


# Load generation -------------------------------------------------------------------------------------


def wrk(url: str, body: bytes, conc: int, duration: float) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = {json.dumps(body.decode())}\n"
        )
    try:
        cmd = [
            "wrk",
            "-t1",
            f"-c{conc}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            script.name,
            url,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _wrk_ms(out, "50%"),
        "p99_ms": _wrk_ms(out, "99%"),
        "errors": errors,
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
    }  # type: ignore[union-attr]


def _wrk_ms(out: str, pct: str) -> float:
    value, unit = re.search(rf"^\s+{pct}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def aiohttp_load(url: str, body: bytes, conc: int, duration: float) -> dict[str, float]:
    """Fallback load generator (its own process): `conc` connections posting back to back."""
    import aiohttp

    async def main() -> dict[str, float]:
        latencies: list[float] = []
        errors = 0
        stop_at = time.perf_counter() + duration

        async def worker(session: aiohttp.ClientSession) -> None:
            nonlocal errors
            while (t0 := time.perf_counter()) < stop_at:
                async with session.post(url, data=body, headers={"content-type": "application/json"}) as resp:
                    await resp.read()
                    errors += resp.status != 200
                latencies.append(time.perf_counter() - t0)

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as session:
            start = time.perf_counter()
            await asyncio.gather(*(worker(session) for _ in range(conc)))
            elapsed = time.perf_counter() - start
        latencies.sort()
        return {
            "rps": len(latencies) / elapsed,
            "p50_ms": latencies[len(latencies) // 2] * 1e3,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3,
            "errors": errors,
            "requests": len(latencies),
        }

    return asyncio.run(main())


def load(url: str, body: bytes, conc: int, duration: float) -> dict[str, float]:
    if shutil.which("wrk"):
        return wrk(url, body, conc, duration)
    cmd = [sys.executable, __file__, "load", url, body.decode(), str(conc), str(duration)]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


# Orchestration ---------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a server process (Linux): per-request CPU is robust to a busy machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    req = urllib.request.Request(url, data=json.dumps(PROMPT).encode(), headers={"content-type": "application/json"})
    while True:
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not come up")
        time.sleep(0.2)


@contextlib.contextmanager
def servers(
    targets: tuple[str, ...], baseline: str | None = None
) -> Iterator[tuple[dict[str, str], dict[str, int], dict[str, Any]]]:
    """Start upstream and proxies; yield target -> chat URL, target -> pid, what the guard process reported.
    A `<kind>@base` target is `kind` served with `baseline` on PYTHONPATH."""
    procs: list[subprocess.Popen[str]] = []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def start(kind: str, upstream: str | None = None) -> tuple[str, subprocess.Popen[str]]:
        port = free_port()
        kind, at_base = kind.removesuffix("@base"), kind.endswith("@base")
        cmd = [sys.executable, __file__, f"serve-{kind}", str(port), *([upstream] if upstream else [])]
        proc_env = {**env, "PYTHONPATH": baseline} if at_base and baseline else env
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=proc_env)
        procs.append(proc)
        return f"http://127.0.0.1:{port}", proc

    try:
        up, up_proc = start("upstream")
        urls = {"direct": f"{up}/v1/chat/completions"}
        pids = {"direct": up_proc.pid}
        wait_ready(urls["direct"])
        info: dict[str, Any] = {}
        for kind in targets:
            if kind == "direct":
                continue
            base, proc = start(kind, f"{up}/v1")
            if kind.startswith("guard"):
                assert proc.stdout is not None
                info[kind] = json.loads(proc.stdout.readline())["stages"]
            urls[kind] = f"{base}/v1/chat/completions"
            pids[kind] = proc.pid
            wait_ready(urls[kind])
        yield urls, pids, info
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


def run(
    duration: float, rounds: int, stream: bool, targets: tuple[str, ...] = TARGETS, baseline: str | None = None
) -> dict[str, Any]:
    modes = ["json", "tools", "sse"] if stream else ["json", "tools"]
    bodies = {
        "json": json.dumps(PROMPT).encode(),
        "tools": json.dumps({**PROMPT, "tools": [TOOL]}).encode(),
        "sse": json.dumps({**PROMPT, "stream": True}).encode(),
    }
    samples: dict[str, list[dict[str, float]]] = {}
    with servers(targets, baseline) as (urls, pids, info):
        for target in targets:  # warm-up: connection pools, first-request imports
            load(urls[target], bodies["json"], 4, 1)
        for r in range(rounds):
            order = targets[r % len(targets) :] + targets[: r % len(targets)]  # rotate to spread drift
            for mode in modes:
                for conc in (1, 16):
                    for target in order:
                        key = f"{mode}|{conc}|{target}"
                        cpu0 = cpu_seconds(pids[target])
                        sample = load(urls[target], bodies[mode], conc, duration)
                        cpu1 = cpu_seconds(pids[target])
                        if cpu0 is not None and cpu1 is not None and sample["requests"]:
                            sample["cpu_us_per_req"] = (cpu1 - cpu0) / sample["requests"] * 1e6
                        samples.setdefault(key, []).append(sample)
                        print(f"round {r + 1}/{rounds} {key}: {samples[key][-1]}", file=sys.stderr)
    metrics = ("rps", "p50_ms", "p99_ms", "cpu_us_per_req")
    medians = {
        k: {m: statistics.median(s.get(m, float("nan")) for s in v) for m in metrics}
        | {"errors": sum(s["errors"] for s in v)}
        for k, v in samples.items()
    }
    return {
        "medians": medians,
        "samples": samples,
        "guard": info,
        "duration_s": duration,
        "rounds": rounds,
        "load_generator": "wrk" if shutil.which("wrk") else "aiohttp",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_avg": os.getloadavg(),
    }


def table(result: dict[str, Any]) -> str:
    med = result["medians"]
    lines = [
        "| mode | conc | target | req/s | p50 ms | p99 ms | server CPU µs/req | req/s vs bare | added p50 ms vs bare |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, m in med.items():
        mode, conc, target = key.split("|")
        base = med[f"{mode}|{conc}|bare"]
        ratio = m["rps"] / base["rps"]
        added = m["p50_ms"] - base["p50_ms"]
        lines.append(
            f"| {mode} | {conc} | {target} | {m['rps']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | "
            f"{m['cpu_us_per_req']:.0f} | {ratio:.0%} | {added:+.2f} |"
            + (f" errors: {m['errors']}" if m["errors"] else "")
        )
    for mode_conc in sorted({k.rsplit("|", 1)[0] for k in med}):
        pairs = [
            ("Redis limits + feedback cache vs the same guard without them", "guard-fleet", "guard-rec"),
            ("guard vs the baseline's", "guard", "guard@base"),
            ("guard-full vs the baseline's", "guard-full", "guard-full@base"),
            ("full pipeline vs pass-through guard", "guard-full", "guard"),
        ]
        for what, a, b in pairs:
            this, that = med.get(f"{mode_conc}|{a}"), med.get(f"{mode_conc}|{b}")
            if this and that:
                lines.append(
                    f"\n{mode_conc.replace('|', ', conc ')}: {what}: req/s {this['rps'] / that['rps']:.0%}, "
                    f"p50 {this['p50_ms'] - that['p50_ms']:+.2f} ms, "
                    f"CPU/req {this['cpu_us_per_req'] / that['cpu_us_per_req']:.2f}x"
                )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("serve-"):
        serve(sys.argv[1].removeprefix("serve-"), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
        return
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        url, body, conc, duration = sys.argv[2:6]
        print(json.dumps(aiohttp_load(url, body.encode(), int(conc), float(duration))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-stream", action="store_true", help="skip the SSE measurements")
    parser.add_argument(
        "--targets", default=",".join(TARGETS), help="comma-separated subset (bare, the baseline, is always measured)"
    )
    parser.add_argument("--baseline", help="a checkout whose guard targets run beside these as <target>@base")
    args = parser.parse_args()
    chosen = [t for t in args.targets.split(",") if t]
    unknown = set(chosen) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))} (known: {', '.join(TARGETS)})")
    targets = tuple(t for t in TARGETS if t in chosen or t == "bare")
    if args.baseline:
        targets += tuple(f"{t}@base" for t in targets if t.startswith("guard"))
    result = run(args.duration, args.rounds, not args.no_stream, targets, args.baseline)
    print(
        f"guard stages: {result['guard']}; load generator: {result['load_generator']}; "
        f"{args.rounds} interleaved rounds of {args.duration:g} s, medians\n"
    )
    print(table(result))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"proxy_overhead-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"\nJSON: {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
