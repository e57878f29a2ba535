"""Official clients (openai, LangChain) talk to the proxy as if it were OpenAI; the proxy forwards upstream."""

from __future__ import annotations

import json

import httpx
import pytest
from openai import AsyncOpenAI, OpenAI
from support.upstream import ECHO


def openai_client(base_url: str, key: str = "unused") -> OpenAI:
    return OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=10)


def test_openai_client_gets_the_upstream_answer_and_id_with_the_exchange_id_in_a_header(proxy) -> None:
    p = proxy()
    raw = openai_client(p.v1).chat.completions.with_raw_response.create(
        model=ECHO, messages=[{"role": "user", "content": "hello proxy"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: hello proxy"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == ECHO
    assert completion.id.startswith("chatcmpl-up")  # the upstream's own id
    exchange_id = raw.headers["x-guard-exchange-id"]
    assert exchange_id.startswith("chatcmpl-") and exchange_id != completion.id
    assert completion.system_fingerprint == "fp_fake123"
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    assert completion.usage.completion_tokens_details.reasoning_tokens == 0


def test_openai_client_streams_chunks_in_order_with_the_upstream_id(proxy) -> None:
    p = proxy()
    text = "the quick brown fox jumps"
    stream = openai_client(p.v1).chat.completions.create(
        model=ECHO,
        messages=[{"role": "user", "content": f"say: {text}"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == text
    # Chunks that reach the proxy in one read may leave it as one (paced streams: see the disconnect test).
    assert 1 <= len([c for c in chunks if c.choices and c.choices[0].delta.content]) <= 5
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].id.startswith("chatcmpl-up")
    assert {c.system_fingerprint for c in chunks} == {"fp_fake123"}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_stream_names_the_exchange_in_a_header_and_ends_with_done(proxy) -> None:
    p = proxy()
    body = {"model": ECHO, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", f"{p.v1}/chat/completions", json=body, timeout=10) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in resp.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert resp.headers["x-guard-exchange-id"].startswith("chatcmpl-")
    first = json.loads(lines[0].removeprefix("data: "))
    assert first["id"].startswith("chatcmpl-up") and first["choices"][0]["delta"]["role"] == "assistant"


async def test_async_openai_client_gets_answers_concurrently(proxy) -> None:
    import asyncio

    p = proxy()
    client = AsyncOpenAI(base_url=p.v1, api_key="unused", max_retries=0, timeout=10)
    replies = await asyncio.gather(
        *[client.chat.completions.create(model=ECHO, messages=[{"role": "user", "content": f"n{i}"}]) for i in range(8)]
    )
    await client.close()
    assert [r.choices[0].message.content for r in replies] == [f"echo: n{i}" for i in range(8)]
    assert len({r.id for r in replies}) == 8


def test_unchanged_request_reaches_upstream_byte_for_byte_with_upstream_key(proxy, upstream) -> None:
    p = proxy(upstream_api_key="sk-upstream")
    body = (
        b'{"model": "gpt-fake", "messages": [{"role": "user", "content": "verbatim"}], '
        b'"temperature": 0.5, "x_extra": 1}'
    )
    resp = httpx.post(f"{p.v1}/chat/completions", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 200
    got = next(r for r in reversed(upstream.state.requests) if r.body["messages"][0]["content"] == "verbatim")
    assert got.raw == body
    assert got.authorization == "Bearer sk-upstream"


def test_models_endpoint_lists_upstream_models(proxy) -> None:
    models = openai_client(proxy().v1).models.list()
    assert ECHO in [m.id for m in models.data]


@pytest.mark.parametrize("streaming", [False, True])
def test_langchain_chat_openai_gets_answers_through_proxy(proxy, streaming: bool) -> None:
    from langchain_core.messages import HumanMessage
    from langchain_openai import ChatOpenAI

    p = proxy()
    llm = ChatOpenAI(model=ECHO, base_url=p.v1, api_key="unused", max_retries=0, timeout=10, streaming=streaming)
    if streaming:
        text = "".join(str(chunk.content) for chunk in llm.stream([HumanMessage("say: one two three")]))
    else:
        text = str(llm.invoke([HumanMessage("say: one two three")]).content)
    assert text == "one two three"
