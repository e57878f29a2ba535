"""A process killed with records in its spool: the next start replays them, each exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from sqlalchemy import Engine, func, select

from guard.store.query import count_records
from guard.store.schema import exchanges
from guard.store.writer import RecordWriter

# Writes N records to a database that refuses connections, so they land in the spool; then waits to be killed.
_CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    from records_support import make_record
    from guard.store.db import make_engine
    from guard.store.writer import RecordWriter

    n, spool = int(sys.argv[1]), Path(sys.argv[2])
    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/test", connect_timeout_s=1)
    writer = RecordWriter(engine, spool_dir=spool, batch_size=50, retry_interval_s=60)
    writer.start_thread()
    for i in range(n):
        writer.submit(make_record(i))
    while writer._queue.unfinished_tasks:
        time.sleep(0.01)
    print("spooled", flush=True)
    time.sleep(600)
""")


async def test_killed_process_spool_is_replayed_exactly_once_on_next_start(engine: Engine, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, "700", str(spool), str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "spooled"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    lines = sum(len(p.read_text().splitlines()) for p in spool.glob("*.jsonl"))
    assert lines == 700
    assert count_records(engine) == 0

    writer = RecordWriter(engine, spool_dir=spool)
    await writer.start()
    deadline = time.monotonic() + 30
    while count_records(engine) < 700 and time.monotonic() < deadline:
        time.sleep(0.05)
    await writer.aclose()
    with engine.connect() as conn:
        q = select(func.count()).select_from(exchanges).group_by(exchanges.c.exchange_id)
        per_id = conn.execute(q).scalars().all()
    assert len(per_id) == 700 and set(per_id) == {1}
    assert list(spool.glob("*.jsonl")) == []
