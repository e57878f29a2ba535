"""Everything the upstream answers reaches the client: tool calls, logprobs, n choices, refusals, ids, usage."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from openai import OpenAI
from support.upstream import ARG_FRAGMENT, ECHO, FINGERPRINT

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ARGS = '{"city": "Paris", "unit": "celsius"}'


def client(base_url: str) -> OpenAI:
    return OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=10)


def ask(p: Any, content: str, **extra: Any) -> Any:
    return client(p.v1).chat.completions.create(model=ECHO, messages=[{"role": "user", "content": content}], **extra)


def stream(p: Any, content: str, **extra: Any) -> list[Any]:
    return list(ask(p, content, stream=True, **extra))


def test_a_tool_call_answer_reaches_the_client_whole(proxy) -> None:
    reply = ask(proxy(), f"tool: get_weather {ARGS}", tools=[WEATHER])
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    assert (call.function.name, call.function.arguments, call.type) == ("get_weather", ARGS, "function")
    assert call.id.startswith("call_0_")


def test_parallel_tool_calls_keep_their_order_and_ids(proxy) -> None:
    reply = ask(proxy(), f'tool: get_weather {ARGS} || get_time {{"tz": "CET"}}', tools=[WEATHER])
    calls = reply.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert calls[1].function.arguments == '{"tz": "CET"}' and len({c.id for c in calls}) == 2


def test_streamed_tool_calls_arrive_as_fragments_that_assemble_to_the_calls(proxy) -> None:
    chunks = stream(proxy(), f'tool: get_weather {ARGS} || get_time {{"tz": "CET"}}', tools=[WEATHER])
    calls: dict[int, dict[str, str]] = {}
    fragments = 0
    for chunk in chunks:
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            fragments += 1
            call = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += tc.id or ""
            call["name"] += tc.function.name or ""
            call["arguments"] += tc.function.arguments or ""
    assert [c["name"] for c in calls.values()] == ["get_weather", "get_time"]
    assert calls[0]["arguments"] == ARGS and calls[1]["arguments"] == '{"tz": "CET"}'
    assert fragments >= 2 + len(ARGS) // ARG_FRAGMENT  # deltas, not one rebuilt call
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


@pytest.mark.parametrize("streaming", [False, True])
def test_legacy_function_call_passes_through(proxy, streaming: bool) -> None:
    body = {"model": ECHO, "stream": streaming, "messages": [{"role": "user", "content": f"function: lookup {ARGS}"}]}
    if not streaming:
        msg = httpx.post(f"{proxy().v1}/chat/completions", json=body, timeout=10).json()["choices"][0]
        assert msg["message"]["function_call"] == {"name": "lookup", "arguments": ARGS}
        assert msg["finish_reason"] == "function_call"
        return
    with httpx.stream("POST", f"{proxy().v1}/chat/completions", json=body, timeout=10) as resp:
        frames = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: {")]
    deltas = [f["choices"][0]["delta"].get("function_call") for f in frames if f["choices"]]
    assert "".join(d.get("arguments", "") for d in deltas if d) == ARGS
    assert any(d and d.get("name") == "lookup" for d in deltas)


def test_logprobs_pass_through_whole_and_streamed(proxy) -> None:
    p = proxy()
    reply = ask(p, "say: alpha beta gamma", logprobs=True)
    assert [t.token for t in reply.choices[0].logprobs.content] == ["alpha ", "beta ", "gamma"]
    chunks = stream(p, "say: alpha beta gamma", logprobs=True)
    tokens = [t.token for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert tokens == ["alpha ", "beta ", "gamma"]


def test_n_choices_each_reach_the_client(proxy) -> None:
    p = proxy()
    reply = ask(p, "say: first answer ## second answer", n=2)
    assert [(c.index, c.message.content) for c in reply.choices] == [(0, "first answer"), (1, "second answer")]
    texts: dict[int, str] = {}
    for chunk in stream(p, "say: first answer ## second answer", n=2):
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
    assert texts == {0: "first answer", 1: "second answer"}


def test_refusal_field_passes_through_whole_and_streamed(proxy) -> None:
    p = proxy()
    msg = ask(p, "refuse: I cannot share that.").choices[0].message
    assert msg.refusal == "I cannot share that." and msg.content is None
    chunks = stream(p, "refuse: I cannot share that.")
    assert "".join(c.choices[0].delta.refusal or "" for c in chunks if c.choices) == "I cannot share that."


def test_upstream_fields_the_guard_does_not_know_are_kept(proxy) -> None:
    raw = httpx.post(
        f"{proxy().v1}/chat/completions",
        timeout=10,
        json={"model": ECHO, "messages": [{"role": "user", "content": "hi"}]},
    ).json()
    assert raw["service_tier"] == "default" and raw["system_fingerprint"] == FINGERPRINT
    assert raw["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
    assert raw["id"].startswith("chatcmpl-up")


def test_langchain_bind_tools_gets_the_tool_calls_whole_and_streamed(proxy) -> None:
    from langchain_core.messages import HumanMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    llm = ChatOpenAI(model=ECHO, base_url=proxy().v1, api_key="unused", max_retries=0, timeout=10)
    bound = llm.bind_tools([get_weather])
    msg = bound.invoke([HumanMessage('tool: get_weather {"city": "Paris"}')])
    assert [(c["name"], c["args"]) for c in msg.tool_calls] == [("get_weather", {"city": "Paris"})]
    merged = None
    for chunk in bound.stream([HumanMessage('tool: get_weather {"city": "Paris"}')]):
        merged = chunk if merged is None else merged + chunk
    assert merged is not None and [(c["name"], c["args"]) for c in merged.tool_calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert len(merged.tool_call_chunks) == 1


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
def test_langchain_structured_output_works_through_the_proxy(proxy, method: str) -> None:
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str
        age: int

    llm = ChatOpenAI(model=ECHO, base_url=proxy().v1, api_key="unused", max_retries=0, timeout=10)
    args = '{"name": "Ada", "age": 36}'
    prompt = f"tool: Person {args}" if method == "function_calling" else f"say: {args}"
    person = llm.with_structured_output(Person, method=method).invoke(prompt)
    assert person == Person(name="Ada", age=36)
