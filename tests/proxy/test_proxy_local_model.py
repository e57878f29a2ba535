"""The embedded local model path: a tiny random Llama served from the model store, hot-swapped on promotion."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from support.tinylm import make_tiny_chat_model

from guard.modelstore import ModelStore
from guard.pipeline import Exchange

NAME = "tiny-chat"
MAX_NEW_TOKENS = 6


@pytest.fixture(scope="module")
def built_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """v1 and v2 of the tiny model, built once per module (copied per test)."""
    root = tmp_path_factory.mktemp("models")
    make_tiny_chat_model(root / NAME / "v1", seed=1)
    make_tiny_chat_model(root / NAME / "v2", seed=2)
    return root


@pytest.fixture
def local_proxy(proxy, built_models: Path, tmp_path: Path):
    home = tmp_path / "local-home"
    shutil.copytree(built_models, home / "models")
    store = ModelStore(home / "models")
    store.set_current(NAME, "v1")
    p = proxy(home=home, upstream_url=None, model=NAME, local_max_new_tokens=MAX_NEW_TOKENS)
    return p, store


class Collect:
    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []
        self.arrived = threading.Semaphore(0)

    def record(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)
        self.arrived.release()


def ask(url: str, content: str = "what is the capital of france") -> httpx.Response:
    body = {"model": NAME, "messages": [{"role": "user", "content": content}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)


def test_local_model_answers_non_stream_and_stream_identically(local_proxy) -> None:
    p, _ = local_proxy
    client = openai.OpenAI(base_url=p.v1, api_key="unused", max_retries=0, timeout=60)
    messages = [{"role": "system", "content": "help"}, {"role": "user", "content": "hello what is the weather"}]
    raw = client.chat.completions.with_raw_response.create(model=NAME, messages=messages)
    reply = raw.parse()
    assert raw.headers["x-guard-exchange-id"] == reply.id
    assert reply.model == NAME
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage is not None and 1 <= reply.usage.completion_tokens <= MAX_NEW_TOKENS
    assert reply.usage.prompt_tokens > 5

    chunks = list(client.chat.completions.create(model=NAME, messages=messages, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed.strip() == reply.choices[0].message.content  # greedy: same words either way
    assert chunks[-1].choices[0].finish_reason == reply.choices[0].finish_reason
    assert {c.id for c in chunks} == {chunks[0].id}


def test_local_backend_rejects_other_model_names_with_404(local_proxy) -> None:
    p, _ = local_proxy
    resp = httpx.post(
        f"{p.v1}/chat/completions", json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "model_not_found"
    assert httpx.get(f"{p.v1}/models").json()["data"][0]["id"] == NAME


def test_promoted_version_is_served_without_restart(local_proxy) -> None:
    p, store = local_proxy
    recorder = Collect()
    p.resources.pipeline.recorder = recorder
    assert httpx.get(f"{p.url}/readyz").json()["model_version"] == "v1"
    assert ask(p.url).status_code == 200

    store.set_current(NAME, "v2")
    deadline = time.monotonic() + 30
    while httpx.get(f"{p.url}/readyz").json()["model_version"] != "v2":
        assert time.monotonic() < deadline, "the proxy never picked up v2"
        assert ask(p.url).status_code == 200  # requests keep being answered during the swap
        time.sleep(0.05)
    assert ask(p.url).status_code == 200

    first, last = recorder.exchanges[0], recorder.exchanges[-1]
    assert (first.model_version, last.model_version) == ("v1", "v2")
    answers = {first.model_version: first.response_text, last.model_version: last.response_text}
    assert answers["v1"] != answers["v2"]  # greedy answers of the two seeds differ, so they tell weights apart
    # Every exchange names the version whose weights produced its answer (feedback goes to the right model).
    assert [(e.model_version, e.response_text) for e in recorder.exchanges] == [
        (e.model_version, answers[e.model_version]) for e in recorder.exchanges
    ]


def test_wait_for_swap_makes_next_request_use_new_version(local_proxy) -> None:
    p, store = local_proxy
    recorder = Collect()
    p.resources.pipeline.recorder = recorder
    store.set_current(NAME, "v2")
    p.call(p.resources.models.local.wait_for_swap())
    assert httpx.get(f"{p.url}/readyz").json()["model_version"] == "v2"
    assert ask(p.url).status_code == 200
    assert recorder.exchanges[-1].model_version == "v2"
