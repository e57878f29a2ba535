"""Shutdown under a hung Postgres: how long SIGTERM takes, and whether any accepted record is lost.

Each round: `guard serve` (its own process, shipped database timeouts and drain unless overridden) records to a
fresh schema on the local Postgres through a TCP relay; `--before` requests are stored normally, then the
relay freezes (connections stay open, nothing is answered: the database's processes stopped, not dead),
`--during` more requests are served, and the proxy gets SIGTERM: after a few (the writer is still waiting on the
database) and after many (it has already given up on it and spools). The seconds to exit are timed. Then the relay
thaws, the proxy starts again on the same home, replays its spool, and every request's unique marker is
counted in the database: lost (0 times) and duplicated (more than once).

    .venv/bin/python bench/shutdown.py --rounds 3

Needs Postgres on 127.0.0.1:5432 (`GUARD_TEST_PG_HOST`/`_PORT`, database `test`). Not part of `make test`;
`tests/records/test_db_faults.py` runs the same fault with short timeouts.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "records")]

from fault_support import FreezableRelay, ProxyProcess, markers, stored_markers, wait_for  # noqa: E402
from records_support import PG_HOST, PG_PORT, pg_schema, pg_url  # noqa: E402
from support.server import ServedApp  # noqa: E402
from support.upstream import create_upstream  # noqa: E402

from guard.settings import Settings  # noqa: E402
from guard.store.db import make_engine  # noqa: E402

DEFAULTS = Settings.model_fields


def one_round(upstream_v1: str, before: int, during: int, env: dict[str, str]) -> tuple[float, int, int]:
    """(seconds SIGTERM took, records lost, records stored twice) for one round."""
    sent = markers(before + during)
    with pg_schema() as schema, tempfile.TemporaryDirectory() as tmp:
        relay = FreezableRelay((PG_HOST, PG_PORT))
        direct = make_engine(pg_url(schema))  # counts on the real server, never through the relay
        home = Path(tmp)
        try:
            proxy = ProxyProcess(home, upstream_v1, pg_url(schema, "127.0.0.1", relay.port), **env)
            proxy.wait_ready()
            proxy.chat(sent[:before])
            relay.freeze()
            proxy.chat(sent[before:])
            took = proxy.stop(signal.SIGTERM, timeout=120)
            relay.thaw()
            proxy = ProxyProcess(home, upstream_v1, pg_url(schema, "127.0.0.1", relay.port), **env)
            proxy.wait_ready()
            wait_for(lambda: len(stored_markers(direct, sent)) == len(sent), 60)
            proxy.stop()
            counts = stored_markers(direct, sent)
        finally:
            direct.dispose()
            relay.close()
    return took, len(sent) - len(counts), sum(1 for n in counts.values() if n > 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--before", type=int, default=40, help="requests stored before the database hangs")
    ap.add_argument("--during", default="10,200", help="requests served while it hangs (one scenario each)")
    for name in ("db_connect_timeout_s", "db_statement_timeout_s", "shutdown_drain_timeout_s"):
        ap.add_argument(f"--{name.replace('_', '-')}", type=float, default=DEFAULTS[name].default)
    args = ap.parse_args()
    env = {
        "GUARD_DB_CONNECT_TIMEOUT_S": str(args.db_connect_timeout_s),
        "GUARD_DB_STATEMENT_TIMEOUT_S": str(args.db_statement_timeout_s),
        "GUARD_SHUTDOWN_DRAIN_TIMEOUT_S": str(args.shutdown_drain_timeout_s),
    }
    print(" ".join(f"{k}={v}" for k, v in env.items()))
    scenarios = [int(n) for n in args.during.split(",")]
    results: dict[int, list[float]] = {n: [] for n in scenarios}
    with ServedApp(create_upstream()) as upstream:
        for i in range(args.rounds):
            for during in scenarios:
                took, lost, twice = one_round(f"{upstream.url}/v1", args.before, during, env)
                results[during].append(took)
                print(
                    f"round {i + 1}, {during} requests under the hang: SIGTERM -> exit {took:.2f} s; "
                    f"lost {lost}, stored twice {twice}",
                    flush=True,
                )
    for during, took in results.items():
        print(
            f"{during} requests under the hang: shutdown median {statistics.median(took):.2f} s, max {max(took):.2f} s"
        )


if __name__ == "__main__":
    main()
