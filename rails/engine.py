"""The rails engine: input and output rails for one rails directory (all its profiles).

Implements `guard.pipeline.InputRails` and `OutputRails`. The triage result on the exchange (scores,
labels, sentence embedding) is computed by the triage stage; the engine only decides, so its own cost is
a few dictionary look-ups, pre-compiled regexes and one small matrix product.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from guard.domain import Message
from guard.errors import UnknownProfile
from guard.pipeline import (
    Exchange,
    InputVerdict,
    OutputVerdict,
    RailDecision,
    Selection,
    Stage,
    StreamGuard,
    TriageResult,
)
from rails import pii
from rails.compiled import (
    CompiledProfile,
    Encoder,
    Fire,
    TextScorer,
    compile_profile,
    fire_labels,
)
from rails.config import RailsConfigError, RailsDir, read_rails_dir
from rails.policy import StreamSettings, effective

if TYPE_CHECKING:
    from rails.nemo import NemoStage
    from rails.nemo_llm import TaskModels


Fired = list[tuple[Fire, float | None]]


@dataclass(slots=True)
class _Prescreened(InputVerdict):
    """`prescreen`'s verdict, with the cheap rules that fired, so that `check_input` does not run them again."""

    fired: Fired = field(default_factory=list)


class RailsEngine:
    def __init__(
        self, rails_dir: RailsDir, profiles: dict[str, CompiledProfile], nemo: NemoStage | None = None
    ) -> None:
        self.dir = rails_dir
        self.rails_hash = rails_dir.rails_hash
        self.profiles = profiles
        self.nemo = nemo
        self.stream_settings: StreamSettings = rails_dir.policy.stream
        self.tenants = dict(rails_dir.policy.tenants)
        self.default_profile = rails_dir.policy.default_profile

    @classmethod
    def load(
        cls,
        rails_dir: Path,
        *,
        scorer: TextScorer | None = None,
        encoder: Encoder | None = None,
        models: TaskModels | None = None,
    ) -> RailsEngine:
        """Read, validate and compile a rails directory. Raises `RailsConfigError` naming file, line and key.

        `models` answers NeMo's task prompts (self checks, intents...); without it (as in `guard rails check`)
        the config still loads fully, and such rails report an error per request. `scorer` is for Colang flows
        that call `guard_triage` themselves; the engine's own rules decide from the scores they are given.
        """
        spec = read_rails_dir(Path(rails_dir))
        profiles = {name: compile_profile(effective(spec.policy, name), encoder) for name in spec.policy.profile_names}
        engine = cls(spec, profiles)
        if spec.needs_nemo:
            engine.nemo = _nemo_stage(spec, scorer, encoder, engine, models)
            windows = engine.nemo.window_chars()
            if windows is not None:  # NeMo's rails.output.streaming sizes the windows of every output rail
                engine.stream_settings = engine.stream_settings.model_copy(
                    update={"window_chars": max(16, windows[0]), "overlap_chars": windows[1]}
                )
        return engine

    # Profiles -------------------------------------------------------------------------------------------
    def resolve_profile(self, exchange: Exchange) -> str | None:
        """Requested profile > tenant mapping > default profile. An unknown requested profile is a 400."""
        requested = exchange.requested_profile
        if requested is not None:
            if requested not in self.profiles:
                raise UnknownProfile(
                    f"unknown rails profile {requested!r}; known: {', '.join(sorted(self.profiles))}",
                    param="x-guard-profile",
                )
            return requested
        return self.tenants.get(exchange.tenant, self.default_profile)

    def select(self, exchange: Exchange) -> Selection:
        return Selection(self.resolve_profile(exchange) or self.default_profile, self.rails_hash)

    def tenant_profile(self, tenant: str) -> str | None:
        """The profile `guard.yml` maps this tenant to (None when it is not mapped)."""
        return self.tenants.get(tenant)

    def _profile(self, exchange: Exchange) -> CompiledProfile:
        prof = self.profiles.get(exchange.profile or "")  # set by the pipeline from `select`
        return prof if prof is not None else self.profiles[self.select(exchange).profile or self.default_profile]

    # Input ----------------------------------------------------------------------------------------------
    def prescreen(self, exchange: Exchange) -> InputVerdict:
        t0 = time.perf_counter()
        prof = self._profile(exchange)
        fired = self._cheap_fires(prof, exchange.messages)
        verdict = _Prescreened(fired=fired)
        if any(fire.decision().blocks for fire, _ in fired):
            _apply_input(verdict, fired, exchange.messages, None)
            _stamp(verdict, "input", t0)
        return verdict

    @staticmethod
    def _cheap_fires(prof: CompiledProfile, messages: list[Message]) -> Fired:
        """Rules that cost no more than a pass over the text: total length, then patterns on the last user turn
        (not read at all when the length rule already refuses the request)."""
        fired: Fired = []
        if prof.input_length is not None and sum(len(m.text) for m in messages) > prof.input_length.max_chars:
            fired.append((prof.input_length.fire, None))
            if fired[0][0].decision().blocks:
                return fired
        last_user = next((m.text for m in reversed(messages) if m.role == "user"), "")
        fired += [(r.fire, None) for r in prof.input_patterns if r.rx.search(last_user)]
        return fired

    async def check_input(self, exchange: Exchange, early: InputVerdict | None = None) -> InputVerdict:
        t0 = time.perf_counter()
        prof = self._profile(exchange)
        verdict = InputVerdict()
        messages = exchange.messages
        fired = list(early.fired) if isinstance(early, _Prescreened) else self._cheap_fires(prof, messages)
        triage = exchange.triage
        if triage is not None:
            fired += fire_labels(prof.input_labels, triage)
            if prof.intents is not None and triage.embedding is not None:
                try:
                    fired += prof.intents.match(triage.embedding)
                except ValueError:  # embedding from a different encoder than the intents were built with
                    fired.append((self._error_fire(prof, "intents", "input"), None))
        masked = _mask_messages(messages, prof.input_pii.kinds) if prof.input_pii is not None else None
        if masked is not None:
            fired.append((prof.input_pii.fire, None))  # type: ignore[union-attr]
        _apply_input(verdict, fired, messages, masked)
        if verdict.block is None and self.nemo is not None:
            await self.nemo.check_input(exchange, verdict)
        _stamp(verdict, "input", t0)
        return verdict

    # Output ---------------------------------------------------------------------------------------------
    def wants_scores(self, exchange: Exchange) -> bool:
        return self._profile(exchange).needs_output_scores

    async def check_output(
        self, exchange: Exchange, text: str, scores: TriageResult | None = None, *, tool_calls: bool = False
    ) -> OutputVerdict:
        t0 = time.perf_counter()
        prof = self._profile(exchange)
        verdict = OutputVerdict()
        refusal = None if tool_calls else detect_refusal(prof, text, scores)
        fired = output_fires(prof, text, scores, refused=refusal is not None)
        new_text = text
        for fire, score in fired:
            d = fire.decision(score)
            verdict.decisions.append(d)
            if d.mode == "shadow":
                continue
            if d.result == "block" and verdict.block is None:
                verdict.block = d
            elif fire.action == "disclaim" and fire.text:
                new_text += "\n\n" + fire.text
            elif fire.rail == "length" and fire.action == "truncate":
                new_text = new_text[: prof.output_length.max_chars]  # type: ignore[union-attr]
        if prof.output_pii is not None and verdict.block is None:
            spans = pii.find(new_text, prof.output_pii.kinds)
            if spans:
                d = prof.output_pii.fire.decision()
                verdict.decisions.append(d)
                if d.mode == "enforce" and d.result == "block":
                    verdict.block = d
                elif d.mode == "enforce" and d.result == "mask":
                    new_text = pii.apply(new_text, spans)
        if refusal is not None and verdict.block is None:
            verdict.refused = True
            verdict.decisions.append(
                RailDecision("refusal", "output", "pass", "enforce", "model_refused", score=refusal)
            )
        if verdict.block is None and self.nemo is not None:
            await self.nemo.check_output(exchange, new_text, verdict)
            new_text = verdict.text or new_text  # a NeMo flow may rewrite `$bot_message`
        if new_text != text:
            verdict.text = new_text
        _stamp(verdict, "output", t0)
        return verdict

    def _error_fire(self, prof: CompiledProfile, rail: str, stage: Stage) -> Fire:
        """A failed rail: refuses when fail-closed (the default), else is only recorded."""
        closed = self.stream_settings.on_error == "closed"
        return Fire(
            rail,
            stage,
            "refuse" if closed else "allow",
            False,
            prof.refusal_message if closed else None,
            result="error",
        )

    def scoring_failed(self, exchange: Exchange, exc: Exception) -> OutputVerdict:
        """The classifier failed on the answer: a rail error never lets text through unchecked when fail-closed."""
        closed = self.stream_settings.on_error == "closed"
        d = RailDecision(
            "output_scorer",
            "output",
            "error",
            "enforce",
            "fail_closed" if closed else "fail_open",
            self._profile(exchange).refusal_message if closed else None,
        )
        return OutputVerdict([d], block=d if closed else None)

    def relays(self, exchange: Exchange) -> bool:
        return False  # the output rules read every answer, and stream windows hold text back while checked

    def stream_guard(self, exchange: Exchange) -> StreamGuard:
        from rails.stream import WindowStreamGuard

        return WindowStreamGuard(self, exchange, self._profile(exchange))


def _nemo_stage(
    spec: RailsDir, scorer: TextScorer | None, encoder: Encoder | None, engine: RailsEngine, models: TaskModels | None
) -> NemoStage:
    try:
        from rails.nemo import NemoStage  # only configs with Colang flows of their own pay for nemoguardrails
    except ModuleNotFoundError as exc:
        raise RailsConfigError(
            f"{spec.path / 'config.yml'}: its Colang flows need NeMo Guardrails; install the "
            f"`nemo` extra ({exc.name} is missing)"
        ) from None
    try:
        return NemoStage.load(spec.path, scorer=scorer, encoder=encoder, engine=engine, models=models)
    except RailsConfigError:
        raise
    except Exception as exc:  # NeMo's own parse errors (Colang syntax, config schema)
        raise RailsConfigError(f"{spec.path}: NeMo Guardrails rejected the config: {exc}") from None


# Helpers shared with the streaming guard -----------------------------------------------------------------


def output_fires(
    prof: CompiledProfile,
    text: str,
    scores: TriageResult | None,
    *,
    total_chars: int | None = None,
    whole: str | None = None,
    refused: bool = False,
) -> list[tuple[Fire, float | None]]:
    """Rules that fire on a piece of model output (PII and refusal are handled by the callers).

    Streaming passes the window as `text`, the answer's length so far as `total_chars`, and `whole` (the
    full answer) only at the end, for format checks. A refusal that names the harmful topic ("I can't help
    you build a bomb") is not harmful content: label rules are skipped when `refused`.
    """
    fired: list[tuple[Fire, float | None]] = []
    if scores is not None and not refused:
        fired += fire_labels(prof.output_labels, scores)
    fired += [(r.fire, None) for r in prof.output_patterns if r.rx.search(text)]
    length = len(text) if total_chars is None else total_chars
    if prof.output_length is not None and length > prof.output_length.max_chars:
        fired.append((prof.output_length.fire, None))
    whole = text if total_chars is None else whole
    if prof.output_json and whole is not None and not _is_json(whole):
        fired.append((Fire("format", "output", "refuse", prof.shadow, prof.refusal_message), None))
    return fired


def detect_refusal(prof: CompiledProfile, text: str, scores: TriageResult | None) -> float | None:
    """The refusal score (1.0 for a phrase match) when the model refused, else None (guard/refusal.py)."""
    if prof.refusal is None:
        return None
    return prof.refusal.judge(text, scores.scores.get("refusal") if scores is not None else None)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _mask_messages(messages: list[Message], kinds: frozenset[str]) -> list[Message] | None:
    """User messages with PII masked, or None when there was nothing to mask."""
    out, changed = [], False
    for m in messages:
        if m.role == "user" and m.plain:
            masked = pii.mask(m.text, kinds)
            if masked != m.text:
                changed = True
                m = replace(m, text=masked)
        out.append(m)
    return out if changed else None


def _apply_input(verdict: InputVerdict, fired: Fired, messages: list[Message], masked: list[Message] | None) -> None:
    instructions: list[str] = []
    disclaimers: list[str] = []
    redact = False
    for fire, score in fired:
        d = fire.decision(score)
        verdict.decisions.append(d)
        if d.mode == "shadow":
            continue
        if d.result == "block" or (d.result == "error" and fire.action == "refuse"):
            verdict.block = verdict.block or d
        elif fire.action == "safe_complete" and fire.instruction:
            instructions.append(fire.instruction)
        elif fire.action == "disclaim" and fire.text:
            disclaimers.append(fire.text)
        elif fire.action == "redact":
            redact = True
    if verdict.block is not None:
        return
    if redact and masked is None:  # a label rule asked for redaction without a `pii` section: mask every kind
        masked = _mask_messages(messages, frozenset(pii.KINDS))
    new = masked if redact else None
    if instructions:
        new = _with_instructions(new or messages, instructions)
    verdict.messages = new
    if disclaimers:
        verdict.disclaimer = "".join(f"\n\n{t}" for t in dict.fromkeys(disclaimers))


def _with_instructions(messages: list[Message], instructions: list[str]) -> list[Message]:
    extra = " ".join(dict.fromkeys(instructions))
    first = messages[0]
    if first.role == "system" and first.plain:
        return [replace(first, text=f"{first.text}\n\n{extra}"), *messages[1:]]
    return [Message("system", extra), *messages]


def _stamp(verdict: InputVerdict | OutputVerdict, stage: str, t0: float) -> None:
    """Attribute the stage's time evenly; one clock read per stage keeps the engine cheap."""
    decisions = verdict.decisions
    if not decisions:
        decisions.append(RailDecision("policy", stage, "pass"))  # type: ignore[arg-type]
    share = (time.perf_counter() - t0) / len(decisions)
    for i, d in enumerate(decisions):
        decisions[i] = RailDecision(d.rail, d.stage, d.result, d.mode, d.action, d.message, d.score, share)
        if d is verdict.block:
            verdict.block = decisions[i]
