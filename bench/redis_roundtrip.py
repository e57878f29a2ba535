"""CPU per Redis round trip in the serving process: redis-py's asyncio client (as `limits` and the recent store
used it) against `guard.resp.Connection` (what `guard.redisbatch` sends over), one EVALSHA per round trip.

CPU time of this process (user + system), not wall time: on a shared machine it is what stays comparable.
Rounds are interleaved and the median reported.

    python bench/redis_roundtrip.py [--n 3000] [--rounds 5] [--redis redis://127.0.0.1:6379/5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable

SCRIPT = "return #KEYS + #ARGV"
ARGS = ("k1", "k2", 1, 1, 100, 60)


async def measure(url: str, n: int, rounds: int) -> dict[str, float]:
    import redis.asyncio as aredis

    from guard.resp import Connection

    client = aredis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=30)
    sha = await client.script_load(SCRIPT)
    lean = Connection(url)

    async def redis_py() -> None:
        await client.evalsha(sha, 2, *ARGS)  # type: ignore[misc]

    async def redis_py_pipeline() -> None:
        async with client.pipeline(transaction=False) as pipe:
            pipe.evalsha(sha, 2, *ARGS)
            await pipe.execute()

    async def guard_resp() -> None:
        await lean.execute([("EVALSHA", sha, 2, *ARGS)])

    cases: dict[str, Callable[[], Awaitable[None]]] = {
        "redis-py client": redis_py,
        "redis-py pipeline": redis_py_pipeline,
        "guard.resp": guard_resp,
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for call in cases.values():  # warm-up: connections, scripts
        await call()
    for _ in range(rounds):
        for name, call in cases.items():
            t0 = time.process_time()
            for _ in range(n):
                await call()
            samples[name].append((time.process_time() - t0) / n * 1e6)
    await lean.aclose()
    await client.aclose()
    return {name: statistics.median(v) for name, v in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000, help="round trips per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/5")
    args = parser.parse_args()
    import uvloop

    result = uvloop.run(measure(args.redis, args.n, args.rounds))
    print("| client | CPU µs per round trip |\n|---|---|")
    for name, us in result.items():
        print(f"| {name} | {us:.0f} |")


if __name__ == "__main__":
    main()
