"""How the proxy presents a prompt to the served model: triage, then a profile's input rails.

The gate measures a candidate where it will serve. A prompt the input rails refuse never reaches the model, so
it counts as refused for the current model and the candidate alike; one they let through reaches the model as
they rewrote it (a grey-zone label's safe-completion instruction, redaction). Same code as the proxy: its
`Pipeline.screen` (triage results from one `TriageModel` batch, then the input rails), run on whole suites.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from guard.domain import Message
from guard.pipeline import Exchange, TriageResult, screener

if TYPE_CHECKING:
    from guard.triage.runtime import TriageModel
    from rails.engine import RailsEngine

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Framed:
    """One prompt as deployed: the messages the model gets, or the input rail that refuses it."""

    messages: Messages
    blocked_by: str | None = None
    refusal: str | None = None  # what the user gets instead of an answer

    @property
    def context(self) -> str:
        """blocked | instructed (the rails added a system instruction) | plain"""
        if self.blocked_by is not None:
            return "blocked"
        return "instructed" if self.messages and self.messages[0]["role"] == "system" else "plain"


class DeployedView:
    def __init__(self, engine: RailsEngine, triage: TriageModel | None, profile: str | None = None) -> None:
        self.engine = engine
        self.triage = triage
        self.profile = profile

    @classmethod
    def load(cls, rails_dir: Path, triage_dir: Path | None, profile: str | None = None) -> DeployedView:
        from rails.engine import RailsEngine

        triage = None
        if triage_dir is not None and Path(triage_dir).is_dir():
            from guard.triage.runtime import TriageModel

            triage = TriageModel.load(Path(triage_dir))
        return cls(RailsEngine.load(Path(rails_dir), scorer=None, encoder=triage), triage, profile)

    def describe(self) -> dict[str, str | None]:
        return {
            "rails_hash": self.engine.rails_hash,
            "profile": self.profile or self.engine.default_profile,
            "triage": self.triage.version if self.triage is not None else None,
        }

    def frame(self, prompts: Sequence[str]) -> list[Framed]:
        """Each user prompt as the proxy would hand it to the model: the pipeline's own screening, with one
        triage batch for all of them."""
        from guard.triage.stage import conversation_text

        exchanges = [
            Exchange.of([Message.user(p)], tenant="eval", profile=self.profile, id=f"eval-{i}")
            for i, p in enumerate(prompts)
        ]
        triage = None
        if self.triage is not None:
            results = self.triage.predict([conversation_text(ex.messages) for ex in exchanges])
            triage = _Scored({ex.id: r for ex, r in zip(exchanges, results, strict=True)})
        pipeline = screener(triage, self.engine)

        async def screen_all() -> list[Framed]:
            out = []
            for ex in exchanges:
                verdict = await pipeline.screen(ex)
                if verdict.block is not None:
                    out.append(Framed(_plain(ex.messages), verdict.block.rail, verdict.block.message))
                else:
                    out.append(Framed(_plain(verdict.messages or ex.messages)))
            return out

        return asyncio.run(screen_all())


class _Scored:
    """Triage results computed up front in one batch, handed out per exchange."""

    def __init__(self, results: dict[str, TriageResult]) -> None:
        self.results = results

    async def classify(self, exchange: Exchange) -> TriageResult:
        return self.results[exchange.id]

    async def score_text(self, text: str) -> TriageResult | None:
        return None  # the gate screens prompts only


def bare(prompts: Sequence[str]) -> list[Framed]:
    """The prompts as the model alone sees them (no rails in front)."""
    return [Framed([{"role": "user", "content": p}]) for p in prompts]


def _plain(messages: Sequence[Message]) -> Messages:
    return [{"role": m.role, "content": m.text} for m in messages]
