"""CPU per request of the guard's NeMo stage on NeMo's own example configs (../shared/nemo-examples), input
and output rails, with the task prompts answered by the fake upstream on 127.0.0.1 (its HTTP round trips are
in the figure; the fake's own work runs in a thread of this process and is counted too, so this is an upper
bound).

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python bench/nemo_examples.py [--n 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.server import ServedApp  # noqa: E402
from support.upstream import create_upstream  # noqa: E402

from guard.backends.http import HttpUpstream  # noqa: E402
from guard.pipeline import Exchange  # noqa: E402
from guard.settings import load_settings  # noqa: E402
from guard.wire import ChatCompletionRequest, ChatMessage  # noqa: E402
from rails.engine import RailsEngine  # noqa: E402
from rails.nemo_llm import TaskModels  # noqa: E402

EXAMPLES = ROOT / ".." / "shared" / "nemo-examples"
CASES = {
    "bots_hello_world": "Tell me about Paris.",
    "bots_abc": "What's the company policy on paid time off?",
    "configs_sample": "Tell me about Paris.",
    "configs_guardrails_only/input": "Tell me about Paris.",
}


async def measure(name: str, text: str, url: str, n: int) -> float:
    up = HttpUpstream(url)
    await up.start()
    try:
        models = TaskModels(up, embedding_dir=load_settings().home / "minilm")
        engine = RailsEngine.load(EXAMPLES / name, models=models)
        samples = []
        for i in range(n + 5):
            request = ChatCompletionRequest(model="gpt-fake", messages=[ChatMessage(role="user", content=text)])
            ex = Exchange(id=uuid.uuid4().hex, tenant="bench", request=request)
            t0 = time.process_time_ns()
            verdict = await engine.check_input(ex)
            if verdict.block is None:
                await engine.check_output(ex, f"echo: {text}")
            if i >= 5:
                samples.append(time.process_time_ns() - t0)
        return statistics.median(samples) / 1e6
    finally:
        await up.aclose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=30)
    args = ap.parse_args()
    if not EXAMPLES.is_dir():
        sys.exit("../shared/nemo-examples is absent")
    with ServedApp(create_upstream()) as server:
        for name, text in CASES.items():
            ms = asyncio.run(measure(name, text, f"{server.url}/v1", args.n))
            print(f"{name:32s} input+output CPU/request p50 {ms:.1f} ms")


if __name__ == "__main__":
    main()
