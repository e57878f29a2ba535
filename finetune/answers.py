"""A model's greedy eval answers, kept beside its weights so the next cycle does not generate them again.

The current model answers the same suite conversations cycle after cycle, and generating those answers is most
of a cycle's evaluation. Greedy decoding makes them a function of (weights, conversation, generation settings),
so they are stored under a fingerprint of all three: changed weights, a changed rails instruction (it is part of
the conversation) or other settings miss the store and are generated. A candidate's answers are stored in its
own folder, which the registry copies in, so a promoted version arrives with its answers already known.
The refusal judgement is not stored: it is re-read from the answers every time.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

FILE = "eval_answers.jsonl"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")

Messages = list[dict[str, str]]
Generate = Callable[[Sequence[Messages]], list[str]]


def weights_digest(model_dir: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in Path(model_dir).iterdir() if p.suffix in WEIGHT_SUFFIXES):
        h.update(path.name.encode())
        with path.open("rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def _key(messages: Messages) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()


class AnswerStore:
    """`answer(convs, generate)` returns every conversation's answer, generating only those not stored."""

    def __init__(self, model_dir: Path, settings: dict[str, Any]) -> None:
        self.path = Path(model_dir) / FILE
        self.header = {"weights": weights_digest(model_dir), "settings": settings}
        self.known: dict[str, str] = {}
        self.reused = self.generated = 0
        self._load()

    def _load(self) -> None:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return
        if not lines or json.loads(lines[0]) != self.header:
            return  # other weights or settings: nothing in it applies
        for line in lines[1:]:
            row = json.loads(line)
            self.known[row["key"]] = row["answer"]

    def answer(self, convs: Sequence[Messages], generate: Generate) -> list[str]:
        keys = [_key(c) for c in convs]
        todo = [i for i, k in enumerate(keys) if k not in self.known]
        fresh = generate([convs[i] for i in todo]) if todo else []
        for i, text in zip(todo, fresh, strict=True):
            self.known[keys[i]] = text
        self.generated += len(todo)
        self.reused += len(convs) - len(todo)
        if todo:
            self._save()
        return [self.known[k] for k in keys]

    def _save(self) -> None:
        tmp = self.path.with_name(f".{FILE}.tmp")
        rows = [json.dumps(self.header)] + [json.dumps({"key": k, "answer": a}) for k, a in self.known.items()]
        try:
            tmp.write_text("\n".join(rows) + "\n")
            os.replace(tmp, self.path)  # a reader sees the old file or the new one, never half of one
        except OSError:
            pass  # a read-only model folder: the answers are generated again next time, nothing else changes

    def counts(self) -> dict[str, int]:
        return {"generated": self.generated, "reused": self.reused}
