"""Shared resources built once in the app's lifespan: model backend, triage, rails, recorder, pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from guard import __version__, metrics
from guard.auth import Authenticator
from guard.errors import ModelNotFound
from guard.limits import Limiter
from guard.modelstore import ModelStore
from guard.pipeline import ChatModel, NoRails, NoTriage, Pipeline
from guard.settings import Settings
from guard.usage import Recorders, UsageMeter


class ModelRouter:
    """Which backend answers a model name: the upstream answers for any name (it says 404 itself)."""

    def __init__(self, served: str, local: Any = None, upstream: Any = None) -> None:
        self.served = served
        self.local = local
        self.upstream = upstream

    @property
    def backend(self) -> ChatModel:
        return self.upstream or self.local

    def get(self, name: str) -> ChatModel:
        if self.upstream is not None:
            return self.upstream
        if name != self.served:
            raise ModelNotFound(f"model '{name}' does not exist; this proxy serves '{self.served}'", param="model")
        return self.local.pin()  # one version per request, even when a promotion lands mid-request

    async def names(self) -> list[str]:
        if self.upstream is not None:
            listed = [m["id"] for m in await self.upstream.list_models() if isinstance(m, dict) and "id" in m]
            return listed or [self.served]
        return [self.served]


@dataclass
class Resources:
    settings: Settings
    auth: Authenticator
    models: ModelRouter
    pipeline: Pipeline
    triage: Any = None
    rails: Any = None
    store_engine: Any = None
    limiter: Any = None  # guard.limits.Limiter when any limit is set
    corrections: Any = None  # guard.corrections.memory.CorrectionMemory when triage and records are on

    @property
    def rails_hash(self) -> str | None:
        return getattr(self.rails, "rails_hash", None)

    @property
    def triage_device(self) -> str:
        return getattr(self.triage, "device", "none")

    def status(self) -> dict[str, Any]:
        backend = self.models.backend
        return {
            "model": self.models.served,
            "model_version": backend.version,
            "backend": "upstream" if self.models.upstream else "local",
            "triage_device": self.triage_device,
            "triage_version": getattr(self.triage, "version", None),
            "rails_hash": self.rails_hash,
        }


async def _model_backend(settings: Settings, stack: AsyncExitStack) -> ModelRouter:
    if settings.upstream_url:
        from guard.backends.http import HttpUpstream

        upstream = HttpUpstream(
            settings.upstream_url,
            settings.upstream_api_key,
            connect_timeout_s=settings.upstream_connect_timeout_s,
            read_timeout_s=settings.upstream_read_timeout_s,
            retries=settings.upstream_retries,
            max_connections=settings.upstream_max_connections,
            status_retries=settings.upstream_status_retries,
            status_retry_max_wait_s=settings.upstream_status_retry_max_wait_s,
        )
        await upstream.start()
        stack.push_async_callback(upstream.aclose)
        return ModelRouter(settings.model, upstream=upstream)
    from guard.backends.local import LocalModel  # torch is imported only on this path

    local = LocalModel(
        ModelStore(settings.model_dir),
        settings.model,
        max_new_tokens=settings.local_max_new_tokens,
        threads=settings.local_threads,
    )
    await local.start()
    stack.push_async_callback(local.aclose)
    return ModelRouter(settings.model, local=local)


async def _triage(settings: Settings, stack: AsyncExitStack) -> Any:
    if not settings.triage_enabled:
        return NoTriage()
    from guard.triage.stage import TriageStage  # onnxruntime + tokenizers only

    triage = TriageStage.from_settings(settings)
    await triage.start()
    stack.push_async_callback(triage.aclose)
    return triage


async def _rails(settings: Settings, triage: Any, models: ModelRouter, stack: AsyncExitStack) -> Any:
    if not settings.rails_enabled:
        return NoRails()
    from rails.nemo_llm import TaskModels
    from rails.reload import RailsHolder

    scorer = triage if hasattr(triage, "score_text") else None
    # NeMo's task prompts go to the same backend as the chat, or to endpoints a config names, with these limits.
    task_models = TaskModels(
        models,
        connect_timeout_s=settings.upstream_connect_timeout_s,
        read_timeout_s=settings.upstream_read_timeout_s,
        retries=settings.upstream_retries,
        embedding_dir=settings.home / "minilm",
    )
    stack.push_async_callback(task_models.aclose)
    model_version = models.backend.version
    holder = RailsHolder(
        settings.rails_dir,
        scorer=scorer,
        encoder=scorer,
        watch=settings.rails_reload,
        on_swap=lambda engine: metrics.set_build_info(__version__, model_version, engine.rails_hash),
        models=task_models,
    )
    await holder.start()
    stack.push_async_callback(holder.aclose)
    return holder


async def _corrections(settings: Settings, triage: Any, store: Any, stack: AsyncExitStack) -> Any:
    """Reviewed texts overriding the classifier: needs the classifier's embedding and the shared store."""
    if not (settings.overrides_enabled and store is not None and hasattr(triage, "embed")):
        return None
    from guard.corrections.memory import CorrectionMemory

    memory = CorrectionMemory(
        store.engine,
        triage.embed,
        triage.version,
        threshold=settings.override_threshold,
        refresh_s=settings.override_refresh_s,
        max_per_tenant=settings.override_max_per_tenant,
        atlas=getattr(triage, "harm_atlas", None),
        reach=settings.override_reach,
    )
    await memory.start()
    stack.push_async_callback(memory.aclose)
    if hasattr(triage, "on_swap"):
        triage.on_swap(memory.retarget)  # a new classifier version serves with the overrides embedded by it
    return memory


async def _store(settings: Settings, recent: Any, stack: AsyncExitStack) -> Any:
    if not settings.record_enabled:
        return None
    from guard.store.service import open_store
    from rails.pii import mask

    return await stack.enter_async_context(
        open_store(settings, mask=mask if settings.pii_masking else None, recent=recent)
    )


async def _redis(settings: Settings, stack: AsyncExitStack) -> Any:
    """The fleet's Redis, when it shares one: one batched round trip at a time for limits and recent exchanges."""
    if not settings.redis_url:
        return None
    from guard.redisbatch import RedisBatch
    from guard.redisconn import open_redis
    from guard.resp import Connection

    client = await stack.enter_async_context(open_redis(settings.redis_url))
    batch = RedisBatch(Connection(settings.redis_url), client)
    stack.push_async_callback(batch.aclose)  # sends what is queued before the connection closes
    return batch


async def _recent(settings: Settings, redis: Any) -> Any:
    """Recently served exchanges: in Redis when the fleet shares one, else in this process."""
    from guard.recent import LocalRecent, RedisRecent

    if redis is None:
        return LocalRecent(settings.recent_ttl_s)
    recent = RedisRecent(redis, settings.recent_ttl_s)
    await recent.start()
    return recent


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    async with AsyncExitStack() as stack:
        auth = Authenticator.from_settings(settings)
        redis = await _redis(settings, stack)
        recent = await _recent(settings, redis)
        store = await _store(settings, recent, stack)  # drains records after everything else but Redis
        labels = metrics.TenantLabels(auth.tenants, settings.metrics_tenants)
        limiter = Limiter.from_settings(settings, labels, redis)
        models = await _model_backend(settings, stack)
        triage = await _triage(settings, stack)
        rails = await _rails(settings, triage, models, stack)
        corrections = await _corrections(settings, triage, store, stack)
        meter = UsageMeter(labels, limiter)
        recorder = Recorders(store.writer, meter) if store is not None else meter
        pipeline = Pipeline(triage, rails, rails, recorder, corrections, timeout_s=settings.request_timeout_s)
        res = Resources(
            settings,
            auth,
            models,
            pipeline,
            triage=triage,
            rails=rails,
            store_engine=store.engine if store is not None else None,
            limiter=limiter,
            corrections=corrections,
        )
        metrics.set_build_info(__version__, models.backend.version, res.rails_hash)
        yield res
