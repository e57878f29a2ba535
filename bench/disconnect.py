"""Clients that hang up: does the upstream call stop, and what does watching for it cost per request?

1. `--clients` clients send a request the test upstream holds for 20 s (`fake-hold` of
   tests/support/upstream.py, which records whether each held call completed or was cancelled), and hang up
   after `--hang-up-s`; once non-streamed, once streamed (hung up before the first token). Prints how the held
   upstream calls ended.
2. The watcher (`guard.routes.unless_hung_up`: one task per request waiting for the disconnect) against a
   plain await of the same work, `--calls` per round, interleaved rounds, medians: CPU µs added per request.

    .venv/bin/python bench/disconnect.py

Not part of `make test`; tests/proxy/test_proxy_disconnect.py checks the behaviour.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import httpx  # noqa: E402
from support.server import ServedApp  # noqa: E402
from support.upstream import HOLD, HOLD_S, UpstreamState, create_upstream, last_user  # noqa: E402

from guard.app import create_app  # noqa: E402
from guard.routes import unless_hung_up  # noqa: E402
from guard.settings import Settings  # noqa: E402


def hang_ups(clients: int, hang_up_s: float, stream: bool) -> Counter[str]:
    state = UpstreamState()
    with ServedApp(create_upstream(state)) as up, tempfile.TemporaryDirectory() as home:
        settings = Settings(
            home=home, upstream_url=f"{up.url}/v1", triage_enabled=False, rails_enabled=False, record_enabled=False
        )
        with ServedApp(create_app(settings)) as proxy:
            tags = [f"hangup-{stream}-{i}" for i in range(clients)]

            def send(tag: str) -> None:
                body = {"model": HOLD, "stream": stream, "messages": [{"role": "user", "content": tag}]}
                timeout = httpx.Timeout(HOLD_S * 2, read=hang_up_s)
                with contextlib.suppress(httpx.ReadTimeout):  # the client gives up and closes its connection
                    httpx.post(f"{proxy.url}/v1/chat/completions", json=body, timeout=timeout)

            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(send, tags))
            time.sleep(1)
            reached = {last_user(r.body) for r in state.requests}
            return Counter(
                state.wait_stream(tag, HOLD_S + 5) or "unknown" if tag in reached else "never sent upstream"
                for tag in tags
            )


class _Request:
    """What `unless_hung_up` reads of a request: a `receive` that waits, as a connected client's does."""

    def __init__(self) -> None:
        self._never = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self._never.wait()
        return {"type": "http.disconnect"}


async def _work() -> int:
    await asyncio.sleep(0)  # the pipeline awaits at least once
    return 1


async def watcher_cost(calls: int, rounds: int) -> tuple[float, float]:
    """Median CPU µs per request (plain await, with the watcher)."""
    request: Any = _Request()
    plain, watched = [], []
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(calls):
            await _work()
        plain.append((time.process_time() - t0) / calls * 1e6)
        t0 = time.process_time()
        for _ in range(calls):
            await unless_hung_up(request, _work())
        watched.append((time.process_time() - t0) / calls * 1e6)
    return statistics.median(plain), statistics.median(watched)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=60)
    ap.add_argument("--hang-up-s", type=float, default=3.0)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    for stream in (False, True):
        outcomes = hang_ups(args.clients, args.hang_up_s, stream)
        what = "streamed, before the first token" if stream else "not streamed"
        print(f"{what}: {args.clients} clients hung up after {args.hang_up_s} s; held upstream calls: {dict(outcomes)}")
    plain, watched = asyncio.run(watcher_cost(args.calls, args.rounds))
    print(
        f"watching for a disconnect: {watched:.1f} µs CPU per request against {plain:.1f} µs plain "
        f"(+{watched - plain:.1f} µs; medians of {args.rounds} rounds of {args.calls})"
    )


if __name__ == "__main__":
    main()
