"""The pass-through pipeline's own CPU per request, in process: `Pipeline.handle` with pass-through stages and a
model that answers at once (non-streamed: one reply; streamed: three text events and a finish), so that only the
orchestration is measured (no HTTP, no upstream). Robust on a busy machine (process CPU time, medians); compare
two checkouts by running it with each on PYTHONPATH at the same moment.

    PYTHONPATH=. python bench/pipeline_overhead.py [--n 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import statistics
import time
from collections.abc import AsyncIterator

from guard.domain import Message
from guard.pipeline import Exchange, ModelReply, NoRails, NoRecorder, NoTriage, Pipeline, StreamEvent
from guard.wire import ChatCompletionRequest


class InstantModel:
    name = "instant"
    version = None

    async def complete(self, request: ChatCompletionRequest | None, messages: list[Message] | None) -> ModelReply:
        return ModelReply.of_text("hello there friend")

    async def stream(
        self, request: ChatCompletionRequest | None, messages: list[Message] | None
    ) -> AsyncIterator[StreamEvent]:
        for word in ("hello ", "there ", "friend"):
            yield StreamEvent.of_text(word)
        yield StreamEvent.of_text(finish_reason="stop")


def pipeline() -> Pipeline:
    # The shipped request deadline where this checkout has one, so that its cost is in the figure.
    has_deadline = "timeout_s" in inspect.signature(Pipeline.__init__).parameters
    extra = {"timeout_s": 300.0} if has_deadline else {}
    return Pipeline(NoTriage(), NoRails(), NoRails(), NoRecorder(), **extra)  # type: ignore[arg-type]


async def cpu_us_per_request(n: int, stream: bool) -> float:
    p, model = pipeline(), InstantModel()

    async def one() -> None:
        ex = Exchange.of([Message.user("hi")], tenant="bench", stream=stream)
        reply = await p.handle(ex, model)
        if stream:
            async for _ in reply:  # type: ignore[union-attr]
                pass

    for _ in range(n // 10):
        await one()
    t0 = time.process_time()
    for _ in range(n):
        await one()
    return (time.process_time() - t0) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    figures = {
        mode: statistics.median(asyncio.run(cpu_us_per_request(args.n, mode == "sse")) for _ in range(args.rounds))
        for mode in ("json", "sse")
    }
    print(
        f"pipeline CPU per request: json {figures['json']:.1f} µs, sse {figures['sse']:.1f} µs "
        f"(median of {args.rounds} x {args.n}; load average {os.getloadavg()[0]:.1f})"
    )


if __name__ == "__main__":
    main()
