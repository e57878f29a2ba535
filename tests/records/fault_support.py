"""Fault tools for the storage tests: a TCP relay that can be frozen (a hung database: connections stay open,
nothing is answered) and the proxy run as its own process, to stop with SIGTERM or kill with SIGKILL."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
from sqlalchemy import Engine, inspect, select
from support.upstream import ECHO

from guard.store.schema import exchanges


class FreezableRelay:
    """127.0.0.1:<port> -> target. `freeze()`: connections are accepted and kept, nothing is forwarded either
    way (the database's processes are stopped, not dead: the kernel still acknowledges every byte);
    `thaw()` forwards again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._open = threading.Event()
        self._open.set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        self._open.clear()

    def thaw(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._open.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._open.wait()  # frozen: the connection is accepted but its backend is not reached
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            self._socks += [client, server]
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                self._open.wait()
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ProxyProcess:
    """`guard serve` in a child process: no triage, no rails, every exchange recorded."""

    def __init__(self, home: Path, upstream_v1: str, db_url: str, **env: str) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stderr_path = home / f"stderr-{self.port}.log"
        home.mkdir(parents=True, exist_ok=True)
        child_env = {
            **os.environ,
            "GUARD_HOME": str(home),
            "GUARD_DB_URL": db_url,
            "GUARD_UPSTREAM_URL": upstream_v1,
            "GUARD_PORT": str(self.port),
            "GUARD_TRIAGE_ENABLED": "false",
            "GUARD_RAILS_ENABLED": "false",
            "GUARD_RECORD_SAMPLE_RATE": "1",
            "GUARD_DB_STATEMENT_TIMEOUT_S": "1",
            "GUARD_DB_CONNECT_TIMEOUT_S": "2",
            "GUARD_SHUTDOWN_DRAIN_TIMEOUT_S": "2",
            "OMP_NUM_THREADS": "1",
            **env,
        }
        self._stderr = self.stderr_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "guard.cli", "serve"], env=child_env, stdout=subprocess.DEVNULL, stderr=self._stderr
        )

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"proxy exited with {self.proc.returncode}: {self.stderr()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"proxy did not start: {self.stderr()[-2000:]}")

    def chat(self, markers: list[str]) -> None:
        with httpx.Client(timeout=30) as client:
            for m in markers:
                r = client.post(
                    f"{self.url}/v1/chat/completions",
                    json={"model": ECHO, "messages": [{"role": "user", "content": m}]},
                )
                assert r.status_code == 200, r.text

    def metric(self, name: str) -> float:
        for line in httpx.get(f"{self.url}/metrics", timeout=5).text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.split()[-1])
        return 0.0

    def spooled_lines(self) -> int:
        return sum(len(p.read_text().splitlines()) for p in (self.home / "spool").glob("*.jsonl"))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> float:
        """Send `sig` and wait for the exit; returns the seconds it took."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._stderr.close()
        return time.monotonic() - t0

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text()


_MARKER = re.compile(r"marker-[a-z]{8}-[0-9]{5}")


def markers(n: int) -> list[str]:
    # Letters only: a run id of hex digits was now and then all digits, "12345678-00042" reads as a phone number,
    # and the proxy's PII masking stored "marker-[PHONE]" (records kept, but the test could not count them).
    run = "".join(chr(ord("a") + b % 26) for b in uuid.uuid4().bytes[:8])
    return [f"marker-{run}-{i:05d}" for i in range(n)]


def stored_markers(engine: Engine, wanted: list[str]) -> Counter[str]:
    """How many stored records carry each marker (each should be exactly 1)."""
    wanted_set = set(wanted)
    seen: Counter[str] = Counter()
    if not inspect(engine).has_table(exchanges.name):
        return seen  # not migrated yet: the proxy does it once the database answers
    with engine.connect() as conn:
        for (record,) in conn.execute(select(exchanges.c.record)):
            seen.update(m for m in set(_MARKER.findall(record)) if m in wanted_set)
    return seen


def wait_for(cond: object, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(step)
    return bool(cond())  # type: ignore[operator]


__all__ = ["FreezableRelay", "ProxyProcess", "markers", "signal", "stored_markers", "wait_for"]
