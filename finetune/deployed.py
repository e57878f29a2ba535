"""How the proxy presents a prompt to the served model: triage, then a profile's input rails.

The gate measures a candidate where it will serve. A prompt the input rails refuse never reaches the model, so
it counts as refused for the current model and the candidate alike; one they let through reaches the model as
they rewrote it (a grey-zone label's safe-completion instruction, redaction). Same code as the proxy's
`screen` step (`TriageModel` + `RailsEngine.check_input`), run offline on whole suites at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from guard.pipeline import Exchange
from guard.wire import ChatCompletionRequest, ChatMessage

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
        return {"rails_hash": self.engine.rails_hash, "profile": self.profile or self.engine.default_profile,
                "triage": self.triage.version if self.triage is not None else None}

    def frame(self, prompts: Sequence[str]) -> list[Framed]:
        """Each user prompt as the proxy would hand it to the model (one triage batch for all of them)."""
        from guard.triage.stage import conversation_text

        requests = [ChatCompletionRequest(model="eval", messages=[{"role": "user", "content": p}]) for p in prompts]
        results = self.triage.predict([conversation_text(r.messages) for r in requests]) if self.triage else None

        async def screen_all() -> list[Framed]:
            out = []
            for i, req in enumerate(requests):
                ex = Exchange(id=f"eval-{i}", tenant="eval", request=req, profile=self.profile)
                ex.triage = results[i] if results is not None else None
                verdict = await self.engine.check_input(ex)
                if verdict.block is not None:
                    out.append(Framed(_plain(req.messages), verdict.block.rail, verdict.block.message))
                else:
                    out.append(Framed(_plain(verdict.messages or req.messages)))
            return out

        return asyncio.run(screen_all())


def bare(prompts: Sequence[str]) -> list[Framed]:
    """The prompts as the model alone sees them (no rails in front)."""
    return [Framed([{"role": "user", "content": p}]) for p in prompts]


def _plain(messages: Sequence[ChatMessage]) -> Messages:
    return [{"role": m.role, "content": m.text} for m in messages]
