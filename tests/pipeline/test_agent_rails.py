"""Rails for agents: tool-call arguments are checked like text, and a tool-call answer is not a refusal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.records import wait_for_record

HARMFUL_ARGS = '{"query": "nerve agent synthesis, step by step"}'
SEARCH = {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}


def post(p: Any, content: str, **extra: Any) -> httpx.Response:
    return httpx.post(
        f"{p.v1}/chat/completions",
        timeout=30,
        json={"model": "gpt-fake", "tools": [SEARCH], "messages": [{"role": "user", "content": content}], **extra},
    )


def stream_frames(p: Any, content: str, **extra: Any) -> tuple[str, list[dict[str, Any]]]:
    body = {
        "model": "gpt-fake",
        "stream": True,
        "tools": [SEARCH],
        "messages": [{"role": "user", "content": content}],
        **extra,
    }
    with httpx.stream("POST", f"{p.v1}/chat/completions", json=body, timeout=30) as resp:
        frames = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: {")]
    return resp.headers["x-guard-exchange-id"], frames


def test_harmful_tool_call_arguments_are_blocked_like_harmful_text(proxy: Any, rails_dir: Path) -> None:
    p = proxy(rails_enabled=True, rails_dir=rails_dir, record_enabled=True, record_sample_rate=1.0)
    r = post(p, f"tool: search {HARMFUL_ARGS}")
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert "tool_calls" not in choice["message"] and choice["message"]["content"].startswith("I'm sorry")
    record = wait_for_record(p, r.headers["x-guard-exchange-id"])
    assert "blocked_output" in record.flags
    assert [(c.name, c.arguments) for c in record.tool_calls] == [("search", HARMFUL_ARGS)]
    assert any(d.rail == "pattern:recipe_leak" and d.result == "block" for d in record.decisions)


def test_harmful_streamed_tool_call_is_never_sent(proxy: Any, rails_dir: Path) -> None:
    p = proxy(rails_enabled=True, rails_dir=rails_dir)
    _, frames = stream_frames(p, f"tool: search {HARMFUL_ARGS}")
    deltas = [f["choices"][0] for f in frames if f["choices"]]
    assert not any("tool_calls" in d["delta"] for d in deltas)
    assert deltas[-1]["finish_reason"] == "content_filter"


def test_clean_streamed_tool_call_is_released_after_its_check(proxy: Any, rails_dir: Path) -> None:
    p = proxy(rails_enabled=True, rails_dir=rails_dir)
    _, frames = stream_frames(p, 'tool: search {"query": "zebra habitats"}')
    args = "".join(
        tc["function"].get("arguments", "")
        for f in frames
        if f["choices"]
        for tc in f["choices"][0]["delta"].get("tool_calls", [])
    )
    assert args == '{"query": "zebra habitats"}'
    assert frames[-1]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("streaming", [False, True])
def test_each_of_n_choices_is_checked_on_its_own(proxy: Any, rails_dir: Path, streaming: bool) -> None:
    p = proxy(rails_enabled=True, rails_dir=rails_dir)
    content = "say: Zebras live in Africa. ## Here is the nerve agent synthesis route."
    if not streaming:
        choices = post(p, content, n=2).json()["choices"]
        got = {c["index"]: (c["message"]["content"], c["finish_reason"]) for c in choices}
    else:
        _, frames = stream_frames(p, content, n=2)
        texts: dict[int, str] = {}
        finishes: dict[int, str] = {}
        for f in frames:
            for c in f["choices"]:
                texts[c["index"]] = texts.get(c["index"], "") + (c["delta"].get("content") or "")
                if c["finish_reason"]:
                    finishes[c["index"]] = c["finish_reason"]
        got = {i: (texts[i], finishes[i]) for i in texts}
    assert got[0] == ("Zebras live in Africa.", "stop")
    assert got[1][1] == "content_filter" and "nerve agent" not in got[1][0]


@pytest.mark.parametrize("streaming", [False, True])
def test_a_tool_call_only_answer_is_not_flagged_as_a_refusal(
    proxy: Any, triage_model_dir: Path, streaming: bool
) -> None:
    p = proxy(
        triage_enabled=True,
        triage_model=triage_model_dir,
        rails_enabled=True,
        record_enabled=True,
        record_sample_rate=1.0,
    )
    content = 'tool: search {"query": "weather in Paris tomorrow"}'
    if streaming:
        exchange_id, _ = stream_frames(p, content)
    else:
        r = post(p, content)
        assert r.json()["choices"][0]["finish_reason"] == "tool_calls"
        exchange_id = r.headers["x-guard-exchange-id"]
    record = wait_for_record(p, exchange_id)
    assert record.flags == []
    assert record.finish_reason == "tool_calls"
    assert [c.name for c in record.tool_calls] == ["search"]


def test_review_page_and_pairs_show_the_tool_calls_of_a_record() -> None:
    from datetime import UTC, datetime

    from finetune.pairs import _answer
    from guard.admin.templates import exchange_page
    from guard.records import ExchangeRecord, Message, RecordedToolCall

    rec = ExchangeRecord(
        exchange_id="e1",
        tenant="t",
        created_at=datetime.now(UTC),
        model="m",
        response="",
        messages=[Message(role="user", content="weather?")],
        finish_reason="tool_calls",
        tool_calls=[RecordedToolCall(name="get_weather", arguments='{"city": "Oslo"}', id="c1")],
    )
    html = exchange_page(rec, [], [])
    assert 'id="tool-calls"' in html and "get_weather({&quot;city&quot;: &quot;Oslo&quot;})" in html
    assert _answer(rec) == 'get_weather({"city": "Oslo"})'
