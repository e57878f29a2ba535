"""Streaming output rails: text is released only after a window containing it has been checked.

Windows grow from `first_window_chars` (keeps time to first token short) to `window_chars`; each check
covers the new text plus `overlap_chars` already seen, so a phrase across a seam is still caught. The last
`hold_chars` of every window (more when it ends inside a number or address that may be PII) wait for the
next window, so PII is masked whole and a blocked phrase is not half-shown.
"""

from __future__ import annotations

import re
import sys
import time
from typing import TYPE_CHECKING

from guard.pipeline import Exchange, RailDecision, StreamStep, TriageResult
from rails import pii
from rails.compiled import CompiledProfile, Fire

if TYPE_CHECKING:
    from rails.engine import RailsEngine

_PII_CHAR = re.compile(r"[\d@]")


def pii_tail_start(text: str, lo: int) -> int:
    """Start of the trailing run of whitespace-separated tokens that contain a digit or '@' (possibly the
    first half of a card number, phone number or address), not before `lo`; len(text) when there is none."""
    start = len(text)
    while start > lo:
        end = start
        while end > lo and text[end - 1].isspace():
            end -= 1
        begin = end
        while begin > lo and not text[begin - 1].isspace():
            begin -= 1
        if begin == end or _PII_CHAR.search(text, begin, end) is None:
            break
        start = begin
    return start


class WindowStreamGuard:
    def __init__(self, engine: RailsEngine, exchange: Exchange, prof: CompiledProfile) -> None:
        self.engine, self.ex, self.prof = engine, exchange, prof
        self.cfg = engine.stream_settings
        self.buf = ""  # everything the model said so far
        self.checked = 0  # buf[:checked] has been inside a checked window
        self.released = 0  # buf[:released] went to the client
        self.limit = sys.maxsize  # release no further than this (truncation)
        self.spans: list[pii.Span] = []  # PII spans to mask, absolute positions, not yet released
        self.first_scores: TriageResult | None = None
        self.seen: set[str] = set()  # non-blocking rails already recorded for this stream
        self.disclaimers: dict[str, str] = {}
        self.pending = (0, 0)  # buf[start:end] of the window handed out for checking
        self.stopped = False

    def feed(self, text: str) -> str | None:
        if self.stopped:
            return None
        self.buf += text
        target = self.cfg.first_window_chars if self.checked == 0 else self.cfg.window_chars
        if len(self.buf) - self.checked < target:
            return None
        return self._window()

    def finish(self) -> str | None:
        return None if self.stopped else self._window()

    def _window(self) -> str:
        """The text due for a check: what is new since the last window, with `overlap_chars` already seen."""
        self.pending = (max(0, self.checked - self.cfg.overlap_chars), len(self.buf))
        return self.buf[self.pending[0] : self.pending[1]]

    async def check(self, window: str, scores: TriageResult | None, *, final: bool) -> StreamStep:
        t0 = time.perf_counter()
        start, end = self.pending
        try:
            decisions, block = await self._evaluate(window, start, final, scores)
        except Exception:
            return self.scoring_failed(None)
        self.checked = end
        if block is not None:
            self.stopped = True
            return StreamStep(block=block, decisions=_timed(decisions, t0))
        cut = end if final else self._cut(end)
        step = StreamStep(release=self._release(cut), decisions=_timed(decisions, t0))
        if final:
            refusal = self._refusal()
            step.decisions += refusal
            step.refused = bool(refusal)
            step.release += "".join(f"\n\n{t}" for t in self.disclaimers.values())
            self.stopped = True
        return step

    async def _evaluate(
        self, window: str, start: int, final: bool, scores: TriageResult | None
    ) -> tuple[list[RailDecision], RailDecision | None]:
        from rails.engine import detect_refusal, output_fires

        prof = self.prof
        if scores is not None:
            self.first_scores = self.first_scores or scores
        refused = detect_refusal(prof, self.buf, self.first_scores) is not None
        fired = output_fires(
            prof, window, scores, total_chars=len(self.buf), whole=self.buf if final else None, refused=refused
        )
        if prof.output_pii is not None:
            found = [pii.Span(s.start + start, s.end + start, s.kind) for s in pii.find(window, prof.output_pii.kinds)]
            new = [s for s in found if s.start >= self.released and s not in self.spans]
            if new:
                fired.append((prof.output_pii.fire, None))
                if not prof.output_pii.fire.shadow:
                    self.spans = _merge_spans(self.spans, new)
        decisions: list[RailDecision] = []
        block = None
        nemo = self.engine.nemo
        if nemo is not None and nemo.output_flows:  # NeMo's output flows check the same windows
            d = await nemo.check_text(self.ex, window)
            if d.result != "pass":
                decisions.append(d)
                if d.blocks or (d.result == "error" and d.message is not None):
                    block = d
            if block is not None:
                return decisions, block
        for fire, score in fired:
            d = fire.decision(score)
            if d.result != "block" or d.mode == "shadow":
                if fire.rail in self.seen:
                    continue  # record each non-blocking rail once per stream
                self.seen.add(fire.rail)
            decisions.append(d)
            if d.mode == "enforce":
                block = block or (d if d.result == "block" else None)
                self._apply(fire)
        return decisions, block

    def _apply(self, fire: Fire) -> None:
        if fire.action == "disclaim" and fire.text:
            self.disclaimers[fire.rail] = fire.text
        elif fire.rail == "length" and fire.action == "truncate" and self.prof.output_length is not None:
            self.limit = self.prof.output_length.max_chars

    def _cut(self, end: int) -> int:
        cut = max(self.released, end - self.cfg.hold_chars)
        cut = min(cut, pii_tail_start(self.buf, max(self.released, end - pii.MAX_MATCH_CHARS)))
        for s in self.spans:
            if s.start < cut < s.end:
                cut = s.start
        return cut

    def _release(self, cut: int) -> str:
        cut = min(cut, self.limit)
        if cut <= self.released:
            return ""
        inside = [s for s in self.spans if self.released <= s.start and s.end <= cut]
        text = self.buf[self.released : cut]
        if inside:
            text = pii.apply(text, [pii.Span(s.start - self.released, s.end - self.released, s.kind) for s in inside])
            self.spans = [s for s in self.spans if s not in inside]
        self.released = cut
        return text

    def _refusal(self) -> list[RailDecision]:
        from rails.engine import detect_refusal

        score = detect_refusal(self.prof, self.buf, self.first_scores)
        if score is None:
            return []
        return [RailDecision("refusal", "output", "pass", "enforce", "model_refused", score=score)]

    def scoring_failed(self, exc: Exception | None) -> StreamStep:
        """The window's check failed (the classifier, or a rail): fail closed unless the operator chose open."""
        closed = self.cfg.on_error == "closed"
        d = RailDecision(
            "stream_check",
            "output",
            "error",
            "enforce",
            "fail_closed" if closed else "fail_open",
            self.prof.refusal_message if closed else None,
        )
        if closed:
            self.stopped = True
            return StreamStep(block=d, decisions=[d])
        # Fail-open is an explicit operator choice: the unchecked text goes out, and the error is recorded.
        self.checked = len(self.buf)
        return StreamStep(release=self._release(len(self.buf)), decisions=[d])


def _merge_spans(old: list[pii.Span], new: list[pii.Span]) -> list[pii.Span]:
    """A number seen again in a later window (longer, or cut at the window's left edge) is masked as the union
    of its sightings."""
    out: list[pii.Span] = []
    for span in sorted(old + new, key=lambda s: s.start):
        if out and span.start < out[-1].end:
            last = out.pop()
            span = pii.Span(last.start, max(last.end, span.end), span.kind)
        out.append(span)
    return out


def _timed(decisions: list[RailDecision], t0: float) -> list[RailDecision]:
    if not decisions:
        return decisions
    share = (time.perf_counter() - t0) / len(decisions)
    return [RailDecision(d.rail, d.stage, d.result, d.mode, d.action, d.message, d.score, share) for d in decisions]
