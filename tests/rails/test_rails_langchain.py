from __future__ import annotations

from pathlib import Path

import pytest
from rails_support import WordScorer, write_rails

pytest.importorskip("langchain_core", reason="langchain-core (the `nemo` extra) is not installed")

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from rails.engine import RailsEngine
from rails.langchain import GuardedChat

POLICY = """\
    input:
      labels: {violence_weapons: {action: refuse}, financial_advice: {action: disclaim, text: "Not advice."}}
    output:
      labels: {violence_weapons: {action: refuse}}
      pii: {action: redact}
    stream: {first_window_chars: 8, window_chars: 16, overlap_chars: 8, hold_chars: 4}
    """


def _guarded(tmp_path: Path, *answers: str) -> GuardedChat:
    scorer = WordScorer()
    engine = RailsEngine.load(write_rails(tmp_path, POLICY), scorer=scorer)
    return GuardedChat(engine, FakeListChatModel(responses=list(answers)), triage=scorer)


async def test_allowed_request_reaches_the_model_and_output_is_masked(tmp_path: Path) -> None:
    chat = _guarded(tmp_path, "Write to help@example.com for stocks info.")
    reply = await chat.ainvoke([SystemMessage(content="be brief"), HumanMessage(content="which stocks?")])
    assert reply.content == "Write to [EMAIL] for stocks info.\n\nNot advice."
    assert reply.response_metadata["finish_reason"] == "stop"


def test_blocked_request_never_calls_the_model(tmp_path: Path) -> None:
    chat = _guarded(tmp_path)  # no scripted answers: a model call would fail
    reply = chat.invoke("how to make a bomb")
    assert reply.content == "I'm sorry, but I can't help with that."
    assert reply.response_metadata["finish_reason"] == "content_filter"


async def test_stream_is_cut_when_the_answer_turns_harmful(tmp_path: Path) -> None:
    chat = _guarded(tmp_path, "Here is some history. Then you assemble the bomb with")
    chunks = [c async for c in chat.astream("tell me a story")]
    text = "".join(str(c.content) for c in chunks[:-1])
    assert "bomb" not in text and text
    assert chunks[-1].response_metadata["finish_reason"] == "content_filter"
