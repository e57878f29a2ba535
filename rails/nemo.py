"""NeMo Guardrails interop (extra `nemo`).

Two directions:
- `NemoStage`: a rails directory with Colang flows of its own runs those flows through NeMo's `LLMRails`,
  as one stage after our own rails. Only such directories import nemoguardrails.
- `register_guard_actions(app, engine)`: an existing NeMo app calls our triage and rails from its flows as
  the actions `guard_triage`, `guard_check_input` and `guard_check_output`.

Offline: usage telemetry is switched off, and when a config declares no embeddings model, NeMo embeds with
the same all-MiniLM-L6-v2 sentence embedding as its default FastEmbed (from the local package, in NumPy:
`rails.embedding`), which would need a download.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guard import metrics
from guard.domain import Message
from guard.pipeline import Exchange, InputVerdict, OutputVerdict, RailDecision, screener
from rails.compiled import Encoder, TextScorer
from rails.config import OWN_FLOWS, RailsConfigError
from rails.embedding import APPROX_SIM_ERROR, MiniLM, nemo_provider
from rails.embedding import ENGINE as EMBED_ENGINE
from rails.nemo_dialog import NEEDS_NEMO, Canned, CannedDialog
from rails.nemo_llm import PASSTHROUGH, Target, TaskModels, failures, install, request_model, resolve_targets

if TYPE_CHECKING:
    from rails.engine import RailsEngine

log = logging.getLogger(__name__)

_INTERNAL_ERROR = "I'm sorry, an internal error has occurred."  # NeMo's answer when an action raised
_DIALOG_HOUSEKEEPING = frozenset({"generate user intent", "generate next step", "generate bot message"})
_TOKEN_CHARS = 4  # NeMo's streaming chunk_size/context_size count tokens; our windows count characters
COLANG_2 = (
    "colang_version 2.x is not supported: the guard runs Colang 1.0 flows through NeMo's LLMRails "
    "one rail type at a time, which Colang 2's event loop does not allow; convert the flows to Colang 1.0 "
    "or run them in NeMo itself"
)


def _quiet_offline_env() -> None:
    os.environ.setdefault("NEMO_GUARDRAILS_NO_USAGE_STATS", "1")  # telemetry phones home by default
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


class NemoStage:
    """Runs a directory's own (non-guard) Colang input/output flows, and its dialog rails, through LLMRails.

    Task prompts (self checks, user intents, content safety...) go to real models (`rails.nemo_llm`). A
    dialog flow's canned bot message becomes the answer (decision `nemo:<flow>`, action `dialog`); whenever
    NeMo would let the main LLM speak, the request goes on to the model. A rail whose model call failed is
    an `error`: it refuses when `on_error` is closed (the default), else it is recorded and the text passes.
    """

    def __init__(
        self,
        app: Any,
        input_flows: list[str],
        output_flows: list[str],
        dialog: bool = False,
        *,
        on_error: str = "closed",
        refusal: str = "I'm sorry, but I can't help with that.",
        streaming: dict[str, Any] | None = None,
    ) -> None:
        self.app, self.input_flows, self.output_flows, self.dialog = app, input_flows, output_flows, dialog
        self.on_error, self.refusal = on_error, refusal
        self.streaming = streaming or {}  # NeMo's rails.output.streaming, if the config has it
        self.canned: CannedDialog | None = None  # embeddings-only dialog answered without the Colang runtime
        self.notes: list[str] = []  # what of the config the guard does not run (`guard rails check` prints them)

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        scorer: TextScorer | None = None,
        encoder: Encoder | None = None,
        engine: RailsEngine | None = None,
        models: TaskModels | None = None,
    ) -> NemoStage:
        """Build the stage exactly as serving does; `guard rails check` calls this too (with no models), so a
        config that cannot serve fails the check with the same message."""
        _quiet_offline_env()
        from nemoguardrails import LLMRails, RailsConfig

        config = RailsConfig.from_path(str(path))
        if str(config.colang_version).startswith("2"):
            raise RailsConfigError(f"{path / 'config.yml'}: {COLANG_2}")
        policy = engine.dir.policy if engine is not None else None
        on_error = policy.stream.on_error if policy is not None else "closed"
        targets = resolve_targets(config, str(path / "config.yml"))
        if models is not None:
            _probe(models, list(targets.values()), on_error, path / "config.yml")
        main = install(config, targets, models)
        embedder = minilm(models.embedding_dir if models is not None else None)
        use_local_embeddings(config, embedder)
        config.rails.dialog.single_call.enabled = False  # the answer comes from the model, not a combined prompt
        app = LLMRails(config, llm=main, verbose=False)
        _build_indexes(app)
        register_guard_actions(app, engine, scorer)
        own = [f for f in config.rails.input.flows if f not in OWN_FLOWS]
        out = [f for f in config.rails.output.flows if f not in OWN_FLOWS]
        streaming = config.rails.output.streaming.model_dump() if config.rails.output.streaming else None
        stage = cls(
            app,
            own,
            out,
            bool(config.user_messages),
            on_error=on_error,
            refusal=policy.refusal_message if policy is not None else "I'm sorry, but I can't help with that.",
            streaming=streaming,
        )
        stage.notes = _unsupported(config, path)
        for note in stage.notes:
            log.warning("%s", note)
        if stage.dialog:
            approx = embedder.approx if embedder.session8 is not None else None
            stage.canned = CannedDialog.build(app.config, embedder.embed, approx, APPROX_SIM_ERROR)
        return stage

    def window_chars(self) -> tuple[int, int] | None:
        """NeMo's output streaming chunk and context sizes, in characters, when the config sets them."""
        s = self.streaming
        if not self.output_flows or not s.get("enabled"):
            return None
        return int(s.get("chunk_size", 200)) * _TOKEN_CHARS, int(s.get("context_size", 50)) * _TOKEN_CHARS

    async def check_input(self, ex: Exchange, verdict: InputVerdict) -> None:
        if self.input_flows or self.dialog:
            messages = [{"role": m.role, "content": m.text} for m in ex.messages if m.role != "tool"]
            d = await self._fast_dialog(ex, messages) if self.canned is not None else None
            if d is None:
                d = await self._run(ex, messages, "input", self.input_flows)
            verdict.decisions.append(d)
            if d.blocks or (d.result == "error" and d.message is not None):
                verdict.block = d

    async def _fast_dialog(self, ex: Exchange, messages: list[dict[str, str]]) -> RailDecision | None:
        """Input flows (if any) in NeMo without dialog, then the embeddings-only intent lookup; None when
        NeMo's full dialog must decide."""
        assert self.canned is not None
        if self.input_flows:
            d = await self._run(ex, messages, "input", self.input_flows, dialog=False)
            if d.result != "pass":
                return d
        t0 = time.perf_counter()
        last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        found = self.canned.decide(last)
        metrics.NEMO_RAIL_LATENCY.labels("dialog", "input").observe(time.perf_counter() - t0)
        if found == NEEDS_NEMO:
            return None
        if isinstance(found, Canned):
            return RailDecision(found.rail, "input", "block", "enforce", "dialog", found.reply(self.canned.rng))
        return RailDecision("nemo", "input", "pass")

    async def check_output(self, ex: Exchange, text: str, verdict: OutputVerdict) -> None:
        if self.output_flows:
            verdict.decisions.append(d := await self.check_text(ex, text))
            if d.blocks or (d.result == "error" and d.message is not None):
                verdict.block = d
            elif d.result == "mask" and d.message is not None:
                verdict.text = d.message  # the flow rewrote `$bot_message`: visible in the answer and the record

    async def check_text(self, ex: Exchange, text: str) -> RailDecision:
        """The output flows on one piece of answer (a whole answer, or a streaming window)."""
        messages = [{"role": m.role, "content": m.text} for m in ex.messages if m.role != "tool"]
        messages.append({"role": "assistant", "content": text})
        return await self._run(ex, messages, "output", self.output_flows)

    async def _run(
        self, ex: Exchange, messages: list[dict[str, str]], stage: str, flows: list[str], dialog: bool | None = None
    ) -> RailDecision:
        dialog = self.dialog and stage == "input" if dialog is None else dialog
        rails = {"input": False, "output": False, "dialog": dialog, "retrieval": False, stage: flows or False}
        problems: list[str] = []
        tokens = request_model.set(ex.model), failures.set(problems)
        try:
            res = await self.app.generate_async(
                messages=messages, options={"rails": rails, "log": {"activated_rails": True}}
            )
        except Exception as exc:  # NeMo raises for some action failures instead of answering
            problems.append(f"{type(exc).__name__}: {exc}")
            res = None
        finally:
            request_model.reset(tokens[0])
            failures.reset(tokens[1])
        activated = list(res.log.activated_rails) if res is not None and res.log is not None else []
        for a in activated:
            if a.duration is not None:
                metrics.NEMO_RAIL_LATENCY.labels(a.name, stage).observe(a.duration)
        reply = (
            "" if res is None else (res.response[0]["content"] if isinstance(res.response, list) else str(res.response))
        )
        stopped = [a.name for a in activated if a.stop]
        if problems or reply.strip() == _INTERNAL_ERROR:
            rail = stopped[0] if stopped else activated[-1].name if activated else flows[0] if len(flows) == 1 else None
            return self._error(stage, rail, problems)
        if stopped:
            return RailDecision(f"nemo:{stopped[0]}", stage, "block", "enforce", "refuse", reply)  # type: ignore[arg-type]
        if dialog and reply.strip() != PASSTHROUGH:
            flow = next(
                (a.name for a in activated if a.type == "dialog" and a.name not in _DIALOG_HOUSEKEEPING), "dialog"
            )
            flow = "dialog" if flow.startswith("anonymous-") else flow  # unnamed `define flow`: a content hash
            return RailDecision(f"nemo:{flow}", stage, "block", "enforce", "dialog", reply)  # type: ignore[arg-type]
        if stage == "output" and reply and reply != messages[-1]["content"]:
            rewrote = next((a.name for a in activated if a.type == "output"), "output")
            return RailDecision(f"nemo:{rewrote}", stage, "mask", "enforce", "rewrite", reply)  # type: ignore[arg-type]
        return RailDecision("nemo", stage, "pass")  # type: ignore[arg-type]

    def _error(self, stage: str, rail: str | None, problems: list[str]) -> RailDecision:
        closed = self.on_error == "closed"
        log.warning(
            "NeMo rail %s failed (%s): %s",
            rail or "?",
            "fail-closed" if closed else "fail-open",
            "; ".join(problems) or "the action raised (NeMo answered with its internal-error message)",
        )
        return RailDecision(
            f"nemo:{rail}" if rail else "nemo",
            stage,  # type: ignore[arg-type]
            "error",
            "enforce",
            "fail_closed" if closed else "fail_open",
            self.refusal if closed else None,
        )


def _unsupported(config: Any, path: Path) -> list[str]:
    parts = []
    if config.rails.retrieval.flows:
        parts.append(f"rails.retrieval.flows {list(config.rails.retrieval.flows)}")
    if docs := len(config.docs or []):
        parts.append(f"kb/ with {docs} document{'s' if docs != 1 else ''}")
    if not parts:
        return []
    return [
        f"{path}: retrieval rails are not run ({', '.join(parts)} ignored): the model answers without the "
        "knowledge base's chunks in its prompt, where NeMo would add them"
    ]


def _probe(models: TaskModels, targets: list[Target], on_error: str, path: Path) -> None:
    """An endpoint that cannot be reached now: fail-closed, every request would be refused, so startup (or
    the reload) fails in one line; fail-open, serving starts and each request records the rail's `error`."""
    down = models.unreachable(targets)
    if not down:
        return
    names = {t.base_url: t.type for t in targets}
    what = "; ".join(f"models[{names[url]}] at {url}: {why}" for url, why in down.items())
    if on_error == "closed":
        raise RailsConfigError(
            f"{path}: unreachable {what}. The policy is fail-closed (stream.on_error: closed), so every request "
            "would be refused: start the endpoint, correct parameters.base_url, or choose stream.on_error: open"
        )
    log.warning("%s: unreachable %s; fail-open: its rails record `error` and let text pass", path, what)


def _build_indexes(app: Any) -> None:
    """Embed the intents, bot messages and flows now, not during the first requests (NeMo builds them lazily;
    a stall of seconds inside a request also outlives upstream keep-alive connections)."""
    gen = getattr(app, "_llm_generation_actions", None)
    steps = [
        ("user_message_index", "user_messages", "_init_user_message_index"),
        ("bot_message_index", "bot_messages", "_init_bot_message_index"),
        ("flows_index", None, "_init_flows_index"),
    ]
    if gen is None or not all(hasattr(gen, name) for _, _, name in steps):
        return  # another NeMo version: it builds them lazily itself

    async def build() -> None:
        for index, source, init in steps:
            if getattr(gen, index, None) is None and (source is None or getattr(gen, source, None)):
                await getattr(gen, init)()

    # Like NeMo's own knowledge-base build: a private loop in a thread, safe inside a running loop.
    thread = threading.Thread(target=asyncio.run, args=(build(),), name="nemo-indexes")
    thread.start()
    thread.join()


@functools.lru_cache(maxsize=2)
def minilm(onnx_dir: Path | None = None) -> MiniLM:
    """One copy of the MiniLM weights per process, shared by every config reload."""
    model = MiniLM(onnx_dir=onnx_dir)
    if model.session is None:
        log.info("MiniLM runs in NumPy; `guard rails build-embedding` builds the faster ONNX model")
    return model


def use_local_embeddings(config: Any, model: MiniLM) -> None:
    """Embed like NeMo's default (all-MiniLM-L6-v2, mean pooled, normalised), from the local package and
    without torch, unless the config chose an embeddings model itself."""
    from nemoguardrails.embeddings.providers import register_embedding_provider
    from nemoguardrails.rails.llm.config import Model

    if any(m.type == "embeddings" for m in config.models):
        return
    from nemoguardrails.embeddings.providers.registry import EmbeddingProviderRegistry

    if EMBED_ENGINE not in EmbeddingProviderRegistry():  # process-wide; its class wraps the one shared model
        register_embedding_provider(nemo_provider(model), EMBED_ENGINE)
    config.models.append(Model(type="embeddings", engine=EMBED_ENGINE, model="all-MiniLM-L6-v2"))


def register_guard_actions(app: Any, engine: RailsEngine | None, scorer: TextScorer | None) -> None:
    """Expose our triage and rails to Colang: `$t = execute guard_triage`, `$ok = execute guard_check_input`."""
    from rails.engine import RailsEngine

    # Inside NeMo, our engine must not call NeMo again.
    plain = None if engine is None else screener(scorer, RailsEngine(engine.dir, engine.profiles))

    async def guard_triage(text: str | None = None, context: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:
        if scorer is None:
            raise RuntimeError("guard_triage needs the triage scorer")
        res = await scorer.score_text(text if text is not None else _context_text(context))
        return {"harmful": res.harmful, "labels": list(res.labels), "scores": dict(res.scores)}

    async def guard_check_input(text: str | None = None, context: dict[str, Any] | None = None, **_: Any) -> bool:
        """True when our input rails let the message through."""
        if plain is None:
            raise RuntimeError("guard_check_input needs a rails engine")
        ex = _exchange(text if text is not None else _context_text(context), context)
        return (await plain.screen(ex)).block is None

    async def guard_check_output(text: str | None = None, context: dict[str, Any] | None = None, **_: Any) -> bool:
        """True when our output rails let the bot message through."""
        if plain is None:
            raise RuntimeError("guard_check_output needs a rails engine")
        answer = text if text is not None else (context or {}).get("bot_message") or ""
        return (await plain.check_output(_exchange(_context_text(context), context), answer)).block is None

    app.register_action(guard_triage, name="guard_triage")
    app.register_action(guard_check_input, name="guard_check_input")
    app.register_action(guard_check_output, name="guard_check_output")


def _context_text(context: dict[str, Any] | None) -> str:
    return str((context or {}).get("user_message") or "")


def _exchange(text: str, context: dict[str, Any] | None) -> Exchange:
    return Exchange.of([Message.user(text or " ")], tenant=str((context or {}).get("guard_tenant") or "nemo"))
