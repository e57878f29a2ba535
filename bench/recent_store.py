"""Where clean, unsampled exchanges wait for feedback: a short-TTL Redis entry or a light Postgres row.

Both keep the same JSON snapshot of a typical exchange. Measured: CPU per kept exchange in this process (the
serving process pays it on every clean request) and in the server (Redis, or the Postgres backend: the store
that every replica shares), wall time to keep N, and the latency of one feedback lookup. Servers on this machine.
Redis: `guard.recent.RedisRecent` as served (batched round trips, `guard.redisbatch`). Postgres: the cheapest
equivalent, rows batched 256 per `executemany` into an unlogged table with an expiry column (what a writer
thread would do).

    python bench/recent_store.py [--n 5000] [--redis redis://127.0.0.1:6379/5]
                                 [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a local process (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def snapshot(i: int) -> tuple[Any, ...]:
    text = "How do I reset my password on the account settings page? " * 3
    return (
        f"chatcmpl-{uuid.uuid4().hex}",
        "team-a",
        None,
        "ab12cd34ef56ab78",
        time.time(),
        "gpt-4o-mini",
        None,
        "1f2e3d4c",
        (("system", "You are a helpful assistant."), ("user", text)),
        "Open Settings, then Security, then choose Reset password. " * 4,
        "",
        (("crime", 0.01),),
        (),
        (),
        (),
        (),
        (("total", 0.012), ("model", 0.010)),
        False,
        "stop",
        None,
    )


async def redis_case(url: str, n: int) -> dict[str, float]:
    import redis.asyncio as aredis

    from guard.recent import RedisRecent
    from guard.redisbatch import RedisBatch
    from guard.resp import Connection

    client = aredis.Redis.from_url(url)
    batch = RedisBatch(Connection(url), client)
    recent = RedisRecent(batch, ttl_s=60)
    await recent.start()
    snaps = [snapshot(i) for i in range(n)]
    server = int((await client.info("server"))["process_id"])
    s0, c0, t0 = proc_cpu(server), time.process_time(), time.perf_counter()
    for s in snaps:
        recent.remember(s[0], "team-a", s)
        if len(recent._queue) >= 16:  # as under 16 concurrent requests: yield to the loop now and then
            await asyncio.sleep(0)
    await batch.aclose()
    cpu, wall, server_cpu = time.process_time() - c0, time.perf_counter() - t0, proc_cpu(server) - s0
    lookups = []
    for s in snaps[:200]:
        t = time.perf_counter()
        assert await recent.claim(s[0], "team-a") is not None
        lookups.append(time.perf_counter() - t)
    await client.delete(*[RedisRecent.PREFIX + s[0] for s in snaps])
    await client.aclose()
    return {
        "cpu_us_per_exchange": cpu / n * 1e6,
        "server_cpu_us_per_exchange": server_cpu / n * 1e6,
        "wall_ms": wall * 1e3,
        "lookup_p50_ms": statistics.median(lookups) * 1e3,
    }


def postgres_case(url: str, n: int) -> dict[str, float]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url, pool_size=1, max_overflow=0)
    table = f"bench_recent_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE UNLOGGED TABLE {table} (exchange_id text PRIMARY KEY, tenant text, "
                "snapshot text, expires_at timestamptz)"
            )
        )
    insert = text(f"INSERT INTO {table} VALUES (:id, :tenant, :snap, now() + interval '60 seconds')")
    snaps = [snapshot(i) for i in range(n)]
    try:
        with engine.connect() as conn:  # the pool's one connection: its backend does every insert below
            server = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        s0, c0, t0 = proc_cpu(server), time.process_time(), time.perf_counter()
        for start in range(0, n, 256):
            batch = snaps[start : start + 256]
            rows = [{"id": s[0], "tenant": "team-a", "snap": json.dumps(["team-a", s])} for s in batch]
            with engine.begin() as conn:
                conn.execute(insert, rows)
        cpu, wall, server_cpu = time.process_time() - c0, time.perf_counter() - t0, proc_cpu(server) - s0
        lookups = []
        query = text(f"SELECT tenant, snapshot FROM {table} WHERE exchange_id = :id AND expires_at > now()")
        with engine.connect() as conn:
            for s in snaps[:200]:
                t = time.perf_counter()
                assert conn.execute(query, {"id": s[0]}).first() is not None
                lookups.append(time.perf_counter() - t)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE {table}"))
        engine.dispose()
    return {
        "cpu_us_per_exchange": cpu / n * 1e6,
        "server_cpu_us_per_exchange": server_cpu / n * 1e6,
        "wall_ms": wall * 1e3,
        "lookup_p50_ms": statistics.median(lookups) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/5")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    results = {"redis": asyncio.run(redis_case(args.redis, args.n)), "postgres": postgres_case(args.pg, args.n)}
    print(f"{args.n} clean exchanges kept for feedback\n")
    print("| store | proxy CPU µs/exchange | server CPU µs/exchange | wall ms for all | feedback lookup p50 ms |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['cpu_us_per_exchange']:.0f} | {r['server_cpu_us_per_exchange']:.0f} | "
            f"{r['wall_ms']:.0f} | {r['lookup_p50_ms']:.2f} |"
        )


if __name__ == "__main__":
    main()
