from __future__ import annotations

from pathlib import Path

from rails_support import BrokenScorer, WordScorer, exchange, write_rails

from guard.pipeline import Exchange, Pipeline, StreamGuard, StreamStep, TextScorer, screener
from rails.engine import RailsEngine

POLICY = """\
    refusal_message: "I'm sorry, but I can't help with that."
    output:
      labels: {violence_weapons: {action: refuse}, financial_advice: {action: disclaim, text: "Not advice."}}
      patterns: [{name: secret, action: refuse, keywords: [launch codes]}]
      pii: {action: redact}
    stream: {first_window_chars: 16, window_chars: 40, overlap_chars: 24, hold_chars: 12%s}
    """


class _Stream:
    """A stream guard driven as the pipeline drives it: each window it names is classified, then decided."""

    def __init__(self, tmp_path: Path, scorer: TextScorer, extra: str = "") -> None:
        engine = RailsEngine.load(write_rails(tmp_path, POLICY % extra))
        self.pipeline: Pipeline = screener(scorer, engine)
        self.ex: Exchange = exchange("q", stream=True)
        self.guard: StreamGuard = engine.stream_guard(self.ex)

    async def feed(self, text: str) -> StreamStep:
        return await self.pipeline.stream_step(self.ex, self.guard, self.guard.feed(text), final=False)

    async def finish(self) -> StreamStep:
        return await self.pipeline.stream_step(self.ex, self.guard, self.guard.finish(), final=True)


def _engine(tmp_path: Path, scorer: TextScorer, extra: str = "") -> _Stream:
    return _Stream(tmp_path, scorer, extra)


async def _run(stream: _Stream, text: str, chunk: int = 5) -> tuple[str, list[StreamStep]]:
    released, steps = "", []
    for i in range(0, len(text), chunk):
        step = await stream.feed(text[i : i + chunk])
        steps.append(step)
        released += step.release
        if step.block is not None:
            return released, steps
    step = await stream.finish()
    steps.append(step)
    return released + step.release, steps


async def test_clean_stream_is_released_whole_and_in_order(tmp_path: Path, scorer: WordScorer) -> None:
    text = "The capital of France is Paris. It sits on the Seine and has many museums to visit."
    released, steps = await _run(_engine(tmp_path, scorer), text)
    assert released == text
    assert all(s.block is None for s in steps)
    assert scorer.calls >= 2  # checked in more than one window


async def test_harmful_continuation_is_cut_mid_answer(tmp_path: Path, scorer: WordScorer) -> None:
    text = "Sure, here is some chemistry background for you. Now, to build the bomb, first take the"
    released, steps = await _run(_engine(tmp_path, scorer), text)
    assert steps[-1].block is not None and steps[-1].block.rail == "label:violence_weapons"
    assert steps[-1].block.message == "I'm sorry, but I can't help with that."
    assert text.startswith(released) and "bomb" not in released
    assert len(released) > 0  # the harmless opening already went out


async def test_text_is_released_only_after_it_was_checked(tmp_path: Path, scorer: WordScorer) -> None:
    guard = _engine(tmp_path, scorer)
    assert (await guard.feed("Short start")).release == ""  # below the first window: nothing unchecked leaves
    step = await guard.feed(" and then more words")
    assert scorer.calls == 1
    assert step.release == "Short start and the"  # the last hold_chars wait for the next window


async def test_phrase_across_a_window_seam_is_caught(tmp_path: Path, scorer: WordScorer) -> None:
    text = "x" * 30 + " the launch codes are 1234"
    released, steps = await _run(_engine(tmp_path, scorer), text, chunk=3)
    assert steps[-1].block is not None and steps[-1].block.rail == "pattern:secret"
    assert "launch" not in released


async def test_pii_split_across_chunks_is_masked_whole(tmp_path: Path, scorer: WordScorer) -> None:
    text = "Your card on file is 4111 1111 1111 1111 and your email is jane.doe@example.com, thanks."
    released, _ = await _run(_engine(tmp_path, scorer), text, chunk=4)
    assert released == "Your card on file is [CARD] and your email is [EMAIL], thanks."


async def test_disclaimer_is_appended_at_the_end(tmp_path: Path, scorer: WordScorer) -> None:
    released, _ = await _run(_engine(tmp_path, scorer), "Index funds and stocks both carry risk over time.")
    assert released.endswith("over time.\n\nNot advice.")


async def test_rail_error_blocks_the_stream_by_default(tmp_path: Path) -> None:
    released, steps = await _run(_engine(tmp_path, BrokenScorer()), "Perfectly fine text, honestly, nothing more.")
    assert released == ""
    assert steps[-1].block is not None and steps[-1].block.result == "error"


async def test_rail_error_releases_text_only_when_fail_open_is_chosen(tmp_path: Path) -> None:
    text = "Perfectly fine text, honestly, nothing more."
    released, steps = await _run(_engine(tmp_path, BrokenScorer(), ", on_error: open"), text)
    assert released == text
    assert any(d.result == "error" for s in steps for d in s.decisions)


async def test_refusal_in_a_stream_is_reported_by_the_last_step(tmp_path: Path, scorer: WordScorer) -> None:
    guard = _engine(tmp_path, scorer)
    await guard.feed("Sorry, I can't help with that request.")
    step = await guard.finish()
    assert step.refused and any(d.action == "model_refused" for d in step.decisions)


def test_pii_tail_holds_back_digit_runs_only() -> None:
    from rails.stream import pii_tail_start

    text = "call me on 0151 496"
    assert text[pii_tail_start(text, 0) :] == "0151 496"
    assert pii_tail_start("plain words only", 0) == len("plain words only")
    long_digits = "1" * 40 + " hello"
    assert pii_tail_start(long_digits, 0) == len(long_digits)  # linear scan, no regex backtracking


class ScriptedModel:
    """A chat model that streams a fixed answer in small chunks (the pipeline's ChatModel protocol)."""

    name = "scripted"
    version = None

    def __init__(self, answer: str, chunk: int = 4) -> None:
        self.answer, self.chunk = answer, chunk

    async def complete(self, request, messages):  # pragma: no cover - streaming only here
        raise NotImplementedError

    async def stream(self, request, messages):
        from guard.pipeline import StreamEvent

        for i in range(0, len(self.answer), self.chunk):
            yield StreamEvent.of_text(self.answer[i : i + self.chunk])
        yield StreamEvent.of_text(finish_reason="stop")


async def test_pipeline_stream_ends_with_content_filter_and_the_rail_message(
    tmp_path: Path, scorer: WordScorer
) -> None:
    pipeline = _engine(tmp_path, scorer).pipeline
    ex = exchange("tell me about chemistry", stream=True)
    model = ScriptedModel("Chemistry is the study of matter. To build a bomb you would need the following")
    reply = await pipeline.handle(ex, model)
    pieces = [d async for d in reply]  # type: ignore[union-attr]
    assert (pieces[-1].text, pieces[-1].finish_reason) == ("I'm sorry, but I can't help with that.", "content_filter")
    streamed = "".join(d.text for d in pieces[:-1])
    assert streamed and model.answer.startswith(streamed) and "bomb" not in streamed
    assert "blocked_output" in ex.flags and ex.finish_reason == "content_filter"


async def test_number_growing_across_windows_is_masked_once(tmp_path: Path, scorer: WordScorer) -> None:
    text = "Please call our support line on 0151 496 0000 1234 any time, we are happy to help you out."
    for chunk in (1, 3, 7):
        released, _ = await _run(_engine(tmp_path, scorer), text, chunk=chunk)
        assert "0151" not in released and released.count("[") == 1, released
