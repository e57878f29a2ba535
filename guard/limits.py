"""Rate limits and quotas per API key and per tenant, on requests and on tokens.

Counters live in Redis when GUARD_REDIS_URL is set (one budget shared by every replica and worker), else in this
process. Requests use a sliding-window counter (one round trip per request and rule; no burst at window edges).
Tokens are known only after the model answered, so they are charged then, into a fixed window that keeps the
overflow: a request that crosses the budget is served, the next ones wait until the window resets.

A backend outage fails open (requests are served, the error is counted and logged): the limits protect the
upstream's budget; they are not worth refusing all traffic for.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Literal, NoReturn

from limits import RateLimitItem, parse_many
from limits.aio.strategies import FixedWindowRateLimiter, SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from guard import metrics
from guard.errors import RateLimited
from guard.settings import Settings
from guard.wire import Usage

log = logging.getLogger("guard.limits")

Scope = Literal["key", "tenant"]
Kind = Literal["requests", "tokens"]


@dataclass(frozen=True, slots=True)
class Rule:
    scope: Scope
    kind: Kind
    item: RateLimitItem

    def describe(self) -> str:
        return f"{self.kind} limit {self.item}"


def rules_from_settings(settings: Settings) -> list[Rule]:
    spec: list[tuple[Scope, Kind, str | None]] = [
        ("key", "requests", settings.limit_key_requests),
        ("key", "tokens", settings.limit_key_tokens),
        ("tenant", "requests", settings.limit_tenant_requests),
        ("tenant", "tokens", settings.limit_tenant_tokens),
    ]
    return [Rule(scope, kind, item) for scope, kind, text in spec if text for item in parse_many(text)]


def storage_uri(redis_url: str | None) -> str:
    return f"async+{redis_url}" if redis_url else "async+memory://"


class Limiter:
    """`admit` before the model is called (raises RateLimited); `charge` the tokens once the answer is known."""

    def __init__(
        self, rules: list[Rule], uri: str = "async+memory://", labels: metrics.TenantLabels | None = None
    ) -> None:
        self.rules = rules
        self.labels = labels or metrics.TenantLabels((), 0)
        options = {"implementation": "redispy"} if "redis" in uri else {}
        self.storage = storage_from_string(uri, **options)  # type: ignore[arg-type]
        self.requests = SlidingWindowCounterRateLimiter(self.storage)  # type: ignore[arg-type]
        self.tokens = FixedWindowRateLimiter(self.storage)  # type: ignore[arg-type]
        self._request_rules = [r for r in rules if r.kind == "requests"]
        self._token_rules = [r for r in rules if r.kind == "tokens"]
        self._owed: dict[str, tuple[Rule, tuple[str, ...], int]] = {}  # tokens not yet charged, per window key
        self._spent: dict[str, float] = {}  # window key -> when it resets, for token windows used up
        self._flusher: asyncio.Task[None] | None = None
        self._last_error_log = 0.0

    @classmethod
    def from_settings(cls, settings: Settings, labels: metrics.TenantLabels | None = None) -> Limiter | None:
        rules = rules_from_settings(settings)
        return cls(rules, storage_uri(settings.redis_url), labels) if rules else None

    async def admit(self, tenant: str, key_hash: str | None) -> None:
        now = time.time()
        for rule in self._token_rules:  # known from the last charge: no round trip on the request path
            until = self._spent.get(self._key(rule, tenant, key_hash), 0.0)
            if until > now:
                self._refuse(rule, tenant, math.ceil(until - now))
        for rule in self._request_rules:
            try:
                ok = await self.requests.hit(rule.item, *self._ident(rule, tenant, key_hash))
            except Exception as exc:
                self._backend_failed(exc)
                continue
            if not ok:
                self._refuse(rule, tenant, await self._retry_after(rule, tenant, key_hash))

    def charge(self, tenant: str, key_hash: str | None, usage: Usage | None) -> None:
        """Add the exchange's tokens to the token windows, in the background (the response is already out).

        Charges that arrive while one is being sent go out together, one call per window. A replica learns that
        a window is spent from the answer to its own charge, so each may serve the requests it already has in
        flight, and one more, past a budget another replica used up.
        """
        if not self._token_rules or usage is None or not usage.total_tokens:
            return
        for rule in self._token_rules:
            key = self._key(rule, tenant, key_hash)
            owed = self._owed.get(key)
            self._owed[key] = (rule, self._ident(rule, tenant, key_hash), (owed[2] if owed else 0) + usage.total_tokens)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def aclose(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)

    # ---------------------------------------------------------------------------------------------------
    def _ident(self, rule: Rule, tenant: str, key_hash: str | None) -> tuple[str, ...]:
        return (rule.kind, rule.scope, tenant if rule.scope == "tenant" else key_hash or tenant)

    def _key(self, rule: Rule, tenant: str, key_hash: str | None) -> str:
        return rule.item.key_for(*self._ident(rule, tenant, key_hash))

    async def _flush(self) -> None:
        while self._owed:
            batch, self._owed = self._owed, {}
            for key, (rule, ident, tokens) in batch.items():
                try:
                    if not await self.tokens.hit(rule.item, *ident, cost=tokens):
                        stats = await self.tokens.get_window_stats(rule.item, *ident)
                        self._spent[key] = stats.reset_time
                except Exception as exc:
                    self._backend_failed(exc)

    async def _retry_after(self, rule: Rule, tenant: str, key_hash: str | None) -> int:
        try:
            stats = await self.requests.get_window_stats(rule.item, *self._ident(rule, tenant, key_hash))
            return max(1, math.ceil(stats.reset_time - time.time()))
        except Exception:
            return rule.item.get_expiry()

    def _refuse(self, rule: Rule, tenant: str, retry_after: int) -> NoReturn:
        metrics.RATE_LIMITED.labels(rule.scope, rule.kind).inc()
        metrics.TENANT_REQUESTS.labels(self.labels(tenant), "rate_limited").inc()
        whose = "API key" if rule.scope == "key" else f"tenant '{tenant}'"
        raise RateLimited(
            f"rate limit reached for this {whose}: {rule.describe()}; try again in {retry_after} s",
            kind=rule.kind,
            retry_after=retry_after,
        )

    def _backend_failed(self, exc: BaseException) -> None:
        metrics.RATE_LIMIT_BACKEND_ERRORS.inc()
        now = time.monotonic()
        if now - self._last_error_log > 10:  # one line per 10 s, not one per request
            self._last_error_log = now
            log.warning(
                "rate limits not enforced: backend error: %s",
                str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
            )
