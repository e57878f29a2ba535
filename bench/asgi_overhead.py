"""CPU per request of each proxy app of `bench/proxy_overhead.py`, driven in-process through ASGI (no HTTP
server, no load generator) against the same fast upstream in its own process.

The HTTP benchmark's ratios swing by 2-5x when other jobs share the machine; this process's own CPU time per
request does much less, so it is the figure to compare a change by. Each (target, checkout) runs in its own
process; rounds are interleaved and the medians reported.

    python bench/asgi_overhead.py [--targets bare,guard,guard-rec,guard-fleet] [--modes json,sse]
        [--conc 16] [--requests 2000] [--rounds 3] [--baseline PATH]

`--baseline PATH` also runs each guard target from another checkout (PATH on PYTHONPATH) as `<target>@base`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def measure(target: str, mode: str, conc: int, requests: int) -> float:
    """CPU µs per request of `target` serving `requests` requests, `conc` at a time (this process)."""
    sys.path.insert(0, str(HERE))
    import proxy_overhead as po

    port = po.free_port()
    upstream = subprocess.Popen([sys.executable, str(HERE / "proxy_overhead.py"), "serve-upstream", str(port)])
    try:
        po.wait_ready(f"http://127.0.0.1:{port}/v1/chat/completions")
        if target.startswith("guard"):
            from guard.app import create_app

            app = create_app(po.guard_settings(f"http://127.0.0.1:{port}/v1", tempfile.mkdtemp(), target))
        else:
            app = po.bare_app(f"http://127.0.0.1:{port}/v1", "aiohttp")
        body = json.dumps({**po.PROMPT, "stream": True} if mode == "sse" else po.PROMPT).encode()
        return asyncio.run(_drive(app, body, conc, requests))
    finally:
        upstream.terminate()
        upstream.wait(10)


async def _drive(app: Any, body: bytes, conc: int, requests: int) -> float:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 5555),
        "server": ("127.0.0.1", 8000),
    }

    async def one() -> None:
        sent, over = False, asyncio.get_running_loop().create_future()

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.shield(over)  # the client stays until the response is complete
            return {"type": "http.disconnect"}

        status: list[int] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app({**scope, "state": {}}, receive, send)
        over.set_result(None)
        if status != [200]:
            raise RuntimeError(f"status {status}")

    async def worker(n: int) -> None:
        for _ in range(n):
            await one()

    async with app.router.lifespan_context(app):
        await worker(200)  # warm-up: connection pools, first-request work
        t0 = time.process_time()
        await asyncio.gather(*(worker(requests // conc) for _ in range(conc)))
        return (time.process_time() - t0) / (requests // conc * conc) * 1e6


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "measure":
        target, mode, conc, requests = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        print(measure(target, mode, conc, requests))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default="bare,guard,guard-rec,guard-fleet")
    parser.add_argument("--modes", default="json,sse")
    parser.add_argument("--conc", type=int, default=16)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", help="a checkout whose guard targets run beside these as <target>@base")
    args = parser.parse_args()
    targets = [t for t in args.targets.split(",") if t]
    runs = [(t, None) for t in targets]
    if args.baseline:
        runs += [(t, args.baseline) for t in targets if t.startswith("guard")]
    samples: dict[str, list[float]] = {}
    for r in range(args.rounds):
        for mode in args.modes.split(","):
            for target, checkout in runs[r % len(runs) :] + runs[: r % len(runs)]:
                env = {**os.environ, "OMP_NUM_THREADS": "1"}
                if checkout:
                    env["PYTHONPATH"] = checkout
                cmd = [sys.executable, __file__, "measure", target, mode, str(args.conc), str(args.requests)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
                key = f"{mode} | {target}{'@base' if checkout else ''}"
                samples.setdefault(key, []).append(float(out.strip().splitlines()[-1]))
                print(f"round {r + 1}/{args.rounds} {key}: {samples[key][-1]:.0f} µs", file=sys.stderr)
    print(f"CPU µs per request, {args.conc} at a time, median of {args.rounds} (load average {os.getloadavg()[0]:.1f})")
    print("\n| mode | target | CPU µs/req | vs bare |\n|---|---|---|---|")
    for key in sorted(samples):
        mode = key.split(" | ")[0]
        cpu = statistics.median(samples[key])
        bare = samples.get(f"{mode} | bare")
        print(f"| {key} | {cpu:.0f} | {f'{cpu / statistics.median(bare):.2f}x' if bare else '-'} |")


if __name__ == "__main__":
    main()
