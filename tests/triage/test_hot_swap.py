"""Triage versions swap under a running proxy: requests keep flowing, new ones use the promoted version, a broken
version leaves the old one serving, and the correction memory embeds for the version that serves."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from guard import metrics
from guard.modelstore import ModelStore
from guard.triage.artifact import MODEL_INT8, RUNTIME_CONFIG, TOKENIZER
from guard.triage.versions import NAME

BENIGN = "What's a good recipe for banana bread?"


def _version(built: Path, root: Path, version: str, *, threshold_scale: float = 1.0) -> None:
    """A registry version from a built model: its runtime config renamed (and thresholds scaled)."""
    target = ModelStore(root).version_dir(NAME, version)
    target.mkdir(parents=True)
    for name in (MODEL_INT8, TOKENIZER):
        shutil.copyfile(built / name, target / name)
    cfg = json.loads((built / RUNTIME_CONFIG).read_text())
    cfg["version"] = version
    cfg["thresholds"] = {k: min(0.999, v * threshold_scale) for k, v in cfg["thresholds"].items()}
    (target / RUNTIME_CONFIG).write_text(json.dumps(cfg))


def _served(proxy: Any, tmp_path: Path, triage_model_dir: Path) -> tuple[Any, ModelStore]:
    home = tmp_path / "home0"  # the proxy fixture's home for its first proxy
    store = ModelStore(home / "models")
    _version(triage_model_dir, store.root, "va")
    _version(triage_model_dir, store.root, "vb", threshold_scale=0.98)
    store.set_current(NAME, "va")
    p = proxy(home=home, triage_enabled=True, triage_poll_s=0.05)
    assert p.settings.model_dir == store.root
    return p, store


def _ask(client: httpx.Client, url: str) -> str:
    r = client.post(url, json={"model": "gpt-fake", "messages": [{"role": "user", "content": BENIGN}]})
    r.raise_for_status()
    return r.headers["x-guard-triage-version"]


def test_a_promoted_version_swaps_in_under_load_without_a_failed_request(
    proxy: Any, tmp_path: Path, triage_model_dir: Path
) -> None:
    p, store = _served(proxy, tmp_path, triage_model_dir)
    url = f"{p.v1}/chat/completions"
    seen: list[tuple[float, float, str]] = []  # (sent, answered, version)
    failures: list[BaseException] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    version = _ask(client, url)
                except Exception as exc:
                    failures.append(exc)
                    continue
                seen.append((sent, time.monotonic(), version))

    workers = [threading.Thread(target=load) for _ in range(6)]
    for w in workers:
        w.start()
    time.sleep(1.0)
    store.set_current(NAME, "vb")
    deadline = time.monotonic() + 30
    while not any(v == "vb" for _, _, v in seen) and time.monotonic() < deadline:
        time.sleep(0.05)
    first_new = min((done for _, done, v in seen if v == "vb"), default=None)
    time.sleep(1.0)
    stop.set()
    for w in workers:
        w.join()

    assert failures == []
    assert first_new is not None, "the proxy never served the promoted version"
    assert any(v == "va" for _, _, v in seen)
    after = [v for sent, _, v in seen if sent > first_new]
    assert after and set(after) == {"vb"}  # every request that started after the swap ran on the new version
    assert httpx.get(f"{p.url}/readyz").json()["triage_version"] == "vb"


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(
    proxy: Any, tmp_path: Path, triage_model_dir: Path
) -> None:
    p, store = _served(proxy, tmp_path, triage_model_dir)
    broken = store.version_dir(NAME, "vbroken")
    shutil.copytree(store.version_dir(NAME, "vb"), broken)
    (broken / MODEL_INT8).write_bytes(b"not an onnx model")
    failed = metrics.TRIAGE_SWAPS.labels("failed")._value.get()
    store.set_current(NAME, "vbroken")
    deadline = time.monotonic() + 20
    while metrics.TRIAGE_SWAPS.labels("failed")._value.get() == failed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metrics.TRIAGE_SWAPS.labels("failed")._value.get() == failed + 1
    with httpx.Client(timeout=30) as client:
        assert _ask(client, f"{p.v1}/chat/completions") == "va"
    store.set_current(NAME, "vb")  # a later promotion is still picked up
    assert p.call(_swapped(p, "vb"))


async def _swapped(p: Any, version: str, timeout_s: float = 20.0) -> bool:
    triage = p.resources.triage
    deadline = time.monotonic() + timeout_s
    while triage.version != version and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return bool(triage.version == version)
