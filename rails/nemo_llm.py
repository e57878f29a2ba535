"""NeMo's LLM calls inside the proxy: task prompts reach a real model through the proxy's own HTTP client.

Every model in a directory's `config.yml` is given to NeMo as a `TaskLLM`:
- `main` without `parameters.base_url` is the proxy's own backend (the upstream, with its timeouts and
  retries, or the local model), asked under the model name the client requested;
- a model with `parameters.base_url` (or NeMo 0.21's `openai_api_base`) is an OpenAI-compatible endpoint,
  called with the same client class and timeouts;
- `openai` / `nim` models without a URL go where NeMo sends them, and need their API key at startup.

When NeMo would let the main LLM write the answer (`general`, `generate_bot_message`, ...), `TaskLLM`
answers with a marker instead and the request goes on to the real model through the pipeline.
Failed calls are remembered per request, so a rail that could not ask its model is an `error`, not a block.
Serving probes each endpoint once at load (`TaskModels.unreachable`, a TCP connection, no prompt sent).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from guard import metrics
from guard.errors import UpstreamUnavailable
from guard.wire import ChatCompletionRequest, ChatMessage, messages_from_wire
from rails.config import RailsConfigError

PASSTHROUGH = "__guard_passthrough__"
# Tasks where NeMo's main LLM would write the answer itself.
ANSWER_TASKS = frozenset({"general", "generate_bot_message", "generate_next_steps", "generate_intent_steps_message"})
_REMOTE = {
    "openai": ("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "nim": ("https://integrate.api.nvidia.com/v1", "NVIDIA_API_KEY"),
    "nvidia_ai_endpoints": ("https://integrate.api.nvidia.com/v1", "NVIDIA_API_KEY"),
}
_SKIPPED_TYPES = frozenset({"embeddings", "jailbreak_detection"})  # NeMo builds no LLM for these

request_model: ContextVar[str | None] = ContextVar("guard_nemo_request_model", default=None)
failures: ContextVar[list[str] | None] = ContextVar("guard_nemo_failures", default=None)


class TaskModelError(RuntimeError):
    """A NeMo task prompt could not be answered (no model, endpoint unreachable, bad reply)."""


class TaskModels:
    """The proxy's backend plus one pooled client per extra endpoint that a config names.

    Built once in the app's lifespan and shared by every config reload; `aclose` closes the endpoints.
    """

    def __init__(
        self,
        backend: Any = None,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        retries: int = 2,
        embedding_dir: Path | None = None,
    ) -> None:
        self.backend = backend  # a ModelRouter (`get(name)`) or a ChatModel; None: no model at all
        self.embedding_dir = embedding_dir  # where `guard rails build-embedding` put minilm.onnx
        self._timeouts = {"connect_timeout_s": connect_timeout_s, "read_timeout_s": read_timeout_s, "retries": retries}
        self._endpoints: dict[tuple[str, str | None], Any] = {}

    def chat_model(self, name: str) -> Any:
        if self.backend is None:
            raise TaskModelError("no model to ask: the proxy has neither an upstream nor a local model")
        return self.backend.get(name) if hasattr(self.backend, "get") else self.backend

    async def endpoint(self, base_url: str, api_key: str | None) -> Any:
        """A started client for the endpoint, created on first use (on the serving loop, not at load)."""
        key = (base_url.rstrip("/"), api_key)
        if key not in self._endpoints:
            from guard.backends.http import HttpUpstream

            up = HttpUpstream(base_url, api_key, **self._timeouts)  # type: ignore[arg-type]
            await up.start()
            self._endpoints[key] = up
        return self._endpoints[key]

    async def aclose(self) -> None:
        for up in self._endpoints.values():
            await up.aclose()

    def unreachable(self, targets: list[Target]) -> dict[str, str]:
        """{endpoint URL: why it cannot be connected to} for the targets outside the proxy: a TCP connection
        with the configured connect timeout, nothing sent, so no prompt, key or token is spent."""
        down: dict[str, str] = {}
        for url in dict.fromkeys(t.base_url for t in targets if t.base_url is not None):
            why = _connect_error(url, self._timeouts["connect_timeout_s"])
            if why is not None:
                down[url] = why
        return down


def _connect_error(url: str, timeout_s: float) -> str | None:
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with socket.create_connection((parts.hostname or "", port), timeout=timeout_s):
            return None
    except (OSError, ValueError) as exc:
        return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


@dataclass(frozen=True, slots=True)
class Target:
    """Where one config.yml model's prompts go."""

    type: str
    base_url: str | None  # None: the proxy's own backend
    api_key: str | None
    model_name: str | None  # None: the model the client asked for

    @property
    def where(self) -> str:
        return self.base_url or "the proxy's model"


def resolve_target(model: Any, path: str) -> Target:
    """Read one NeMo `Model` entry; errors that make every request fail are raised here, at load."""
    params = dict(model.parameters or {})
    base_url = params.get("base_url") or params.get("openai_api_base") or params.get("api_base")
    name = params.get("model_name") or model.model
    key = params.get("api_key") or (os.environ.get(model.api_key_env_var) if model.api_key_env_var else None)
    if base_url:
        return Target(model.type, str(base_url), key, name)
    if model.type == "main":
        return Target("main", None, None, None)
    if model.engine in _REMOTE:
        url, env = _REMOTE[model.engine]
        key = key or os.environ.get(env)
        if not key:
            var = model.api_key_env_var or env
            raise RailsConfigError(
                f"{path}: models[{model.type}] (engine {model.engine}) calls {url} and needs "
                f"an API key: set {var}, or point it at a local endpoint with parameters.base_url"
            )
        return Target(model.type, url, key, name)
    raise RailsConfigError(
        f"{path}: models[{model.type}]: engine {model.engine!r} has no OpenAI-compatible "
        "endpoint; set parameters.base_url"
    )


class TaskLLM:
    """NeMo's `LLMModel` protocol over a `Target`."""

    provider_name = "guardtune"
    provider_url = None

    def __init__(self, target: Target, models: TaskModels | None) -> None:
        self.target, self.models = target, models
        self.model_name = target.model_name or "guard-proxy-model"

    async def generate_async(self, prompt: Any, *, stop: list[str] | None = None, **kwargs: Any) -> Any:
        from nemoguardrails.types import LLMResponse

        task = _current_task()
        if self.target.type == "main" and task in ANSWER_TASKS:
            return LLMResponse(content=PASSTHROUGH)
        t0 = time.perf_counter()
        try:
            text = await self._ask(prompt, stop, kwargs)
        except Exception as exc:
            metrics.NEMO_TASK_LATENCY.labels(task, "error").observe(time.perf_counter() - t0)
            problems = failures.get()
            if problems is not None:
                problems.append(f"{task} via {self.target.where}: {exc}")
            raise
        metrics.NEMO_TASK_LATENCY.labels(task, "ok").observe(time.perf_counter() - t0)
        return LLMResponse(content=text)

    async def stream_async(self, prompt: Any, *, stop: list[str] | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        from nemoguardrails.types import LLMResponseChunk

        reply = await self.generate_async(prompt, stop=stop, **kwargs)
        yield LLMResponseChunk(delta_content=reply.content)

    async def _ask(self, prompt: Any, stop: list[str] | None, params: dict[str, Any]) -> str:
        if self.models is None:
            raise TaskModelError("no model is configured for NeMo's task prompts (guard rails check loads none)")
        name = self.target.model_name or request_model.get() or self.model_name
        if self.target.base_url is None:
            model = self.models.chat_model(name)
        else:
            model = await self.models.endpoint(self.target.base_url, self.target.api_key)
        request = ChatCompletionRequest(
            model=name,
            messages=_messages(prompt),
            stop=stop or None,
            temperature=params.get("temperature"),
            max_tokens=params.get("max_tokens"),
        )
        messages = messages_from_wire(request.messages)
        try:
            reply = await model.complete(request, messages)
        except UpstreamUnavailable:
            # A task prompt has no side effects, so one retry is safe: it covers a pooled connection that the
            # endpoint closed while idle (aiohttp reports "Server disconnected"), not a down endpoint.
            reply = await model.complete(request, messages)
        return reply.text


def resolve_targets(config: Any, path: str) -> dict[str, Target]:
    """Where each LLM model of a NeMo `RailsConfig` is answered, by model type."""
    return {m.type: resolve_target(m, path) for m in config.models if m.type not in _SKIPPED_TYPES}


def install(config: Any, targets: dict[str, Target], models: TaskModels | None) -> TaskLLM:
    """Point every LLM model of a NeMo `RailsConfig` at a `TaskLLM`; returns the main one."""
    from nemoguardrails.llm.providers import register_provider

    engine = f"guard_{uuid.uuid4().hex[:12]}"  # NeMo's provider registry is process-wide: one name per load

    def make(model: str | None = None, guard_type: str = "main", **_: Any) -> TaskLLM:
        return TaskLLM(targets[guard_type], models)

    register_provider(engine, make)
    config.models = [m for m in config.models if m.type != "main"]  # main is passed to LLMRails directly
    for m in config.models:
        if m.type in targets and m.type != "main":
            m.engine, m.parameters, m.api_key_env_var = engine, {"guard_type": m.type}, None
            m.model = m.model or targets[m.type].model_name or m.type
    return TaskLLM(targets.get("main", Target("main", None, None, None)), models)


def _current_task() -> str:
    from nemoguardrails.context import llm_call_info_var

    info = llm_call_info_var.get()
    return str(getattr(info, "task", None) or "unknown")


def _messages(prompt: Any) -> list[ChatMessage]:
    if isinstance(prompt, str):
        return [ChatMessage(role="user", content=prompt)]
    out = []
    for m in prompt:
        role = getattr(m, "role", None) or (m.get("role") if isinstance(m, dict) else "user")
        content = getattr(m, "content", None) if not isinstance(m, dict) else m.get("content")
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        name = str(getattr(role, "value", role))
        kind: Literal["system", "user", "assistant"] = "user"
        if name in ("system", "assistant"):
            kind = "system" if name == "system" else "assistant"
        out.append(ChatMessage(role=kind, content=content or ""))
    return out or [ChatMessage(role="user", content=" ")]
