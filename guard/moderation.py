"""`/v1/moderations` answered by the triage classifier, in OpenAI's response shape."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from guard.domain import Message
from guard.errors import InvalidRequest
from guard.pipeline import Exchange, Triage, TriageResult
from guard.taxonomy import ATTACKS, HARMFUL

CATEGORIES_FILE = Path(__file__).with_name("moderation.yml")
OWN_LABELS = HARMFUL + ATTACKS


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ModerationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: str | list[str] | list[TextPart] = Field(min_length=1)
    model: str | None = None

    def texts(self) -> list[str]:
        if isinstance(self.input, str):
            return [self.input]
        if all(isinstance(i, str) for i in self.input):
            return [i for i in self.input if isinstance(i, str)]
        # Multi-modal input is one item: its text parts together (images are not classified).
        return ["\n".join(p.text for p in self.input if isinstance(p, TextPart) and p.text)]


@functools.cache
def categories() -> dict[str, tuple[str, ...]]:
    raw = yaml.safe_load(CATEGORIES_FILE.read_text())
    mapping = TypeAdapter(dict[str, list[str]]).validate_python(raw)
    unknown = {lab for labels in mapping.values() for lab in labels} - set(OWN_LABELS)
    if unknown:
        raise ValueError(f"{CATEGORIES_FILE}: unknown triage labels {sorted(unknown)}")
    return {k: tuple(v) for k, v in mapping.items()}


def parse(body: bytes) -> ModerationRequest:
    try:
        return ModerationRequest.model_validate_json(body or b"{}")
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "input"
        raise InvalidRequest(f"invalid value for '{loc}': {err['msg']}", param=loc) from None


async def moderate(triage: Triage, req: ModerationRequest, tenant: str, model: str) -> dict[str, Any]:
    """One result per input, scored exactly as the proxy scores a user turn (the triage stage's `classify`)."""
    results = []
    for text in req.texts():
        scored = await triage.classify(Exchange.of([Message.user(text)], tenant=tenant))
        results.append(_result(scored))
    return {"id": f"modr-{os.urandom(12).hex()}", "model": model, "results": results}


def _result(scored: TriageResult | None) -> dict[str, Any]:
    scores = scored.scores if scored is not None else {}
    over = set(scored.labels) if scored is not None else set()
    flags: dict[str, bool] = {}
    values: dict[str, float] = {}
    for category, labels in categories().items():
        values[category] = max((scores.get(lab, 0.0) for lab in labels), default=0.0)
        flags[category] = any(lab in over for lab in labels)
    for label in OWN_LABELS:
        values[label] = scores.get(label, 0.0)
        flags[label] = label in over
    return {"flagged": any(flags.values()), "categories": flags, "category_scores": values}
