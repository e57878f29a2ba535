"""The model's answers for the pair builder, generated in batches while the builder asks for them one at a time.

Building pairs asks the current model for many small things, one record at a time: a critique and then a revision
of each wrongly refused request, N samples for best-of-N, one sample per anchor. Answered one by one (batch 1), 25
uncorrected refusals took about 250 s of a 500-pair cycle. Here a request whose answer is not in yet is recorded
and raises `Deferred`; the builder sets that record aside, goes on with the others, and once it has been through
them all `flush` answers every recorded request in length-sorted batches, and the builder goes over the records
again. The answers depend only on the requests, never on timing, so a build reproduces.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Messages = list[dict[str, str]]
# (conversations, max_new_tokens, sample) -> one answer per conversation, in order
GenerateMany = Callable[[Sequence[Messages], int, bool], list[str]]


class Deferred(Exception):
    """The answer to a generation request is not in yet: the record is built again after the next flush."""


@dataclass(frozen=True)
class _Request:
    messages: str  # the conversation as JSON (hashable)
    max_new_tokens: int
    samples: int  # 0: one greedy answer; n: n sampled answers


class BatchedGeneration:
    def __init__(self, generate: GenerateMany) -> None:
        self._generate = generate
        self._answers: dict[_Request, list[str]] = {}
        self._pending: dict[_Request, None] = {}  # insertion-ordered: batches follow the builder's order

    def greedy(self, max_new_tokens: int) -> Callable[[Messages], str]:
        """One greedy answer to a conversation (a `revise.Generate`)."""
        return lambda messages: self._get(_Request(json.dumps(messages), max_new_tokens, 0))[0]

    def sampler(self, max_new_tokens: int = 96) -> Callable[[Messages, int], list[str]]:
        """n sampled answers to a conversation (a `pairs.Sampler`)."""
        return lambda messages, n: self._get(_Request(json.dumps(messages), max_new_tokens, n))

    def _get(self, req: _Request) -> list[str]:
        answers = self._answers.get(req)
        if answers is None:
            self._pending[req] = None
            raise Deferred
        return answers

    def flush(self) -> int:
        """Answer every request recorded since the last flush; returns how many there were."""
        todo, self._pending = list(self._pending), {}
        groups: dict[tuple[int, bool], list[_Request]] = {}
        for req in todo:
            groups.setdefault((req.max_new_tokens, req.samples > 0), []).append(req)
        for (max_new_tokens, sample), reqs in groups.items():
            convs = [json.loads(r.messages) for r in reqs for _ in range(max(r.samples, 1))]
            texts = iter(self._generate(convs, max_new_tokens, sample))
            for r in reqs:
                self._answers[r] = [next(texts) for _ in range(max(r.samples, 1))]
        return len(todo)
