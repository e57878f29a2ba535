"""Rate limits and quotas per API key and per tenant, on requests and on tokens.

Counters live in Redis when GUARD_REDIS_URL is set (one budget shared by every replica and worker,
`guard.limits_redis`), else in this process (`MemoryCounters`, the `limits` library). Requests use a
sliding-window counter (no burst at window edges); a request is admitted when every window that applies has
room, and only then counted in each. Tokens are known only after the model answered, so they are charged then,
into a fixed window that keeps the overflow: a request that crosses the budget is served, the next ones wait
until the window resets.

A backend outage fails open (requests are served, the error is counted and logged): the limits protect the
upstream's budget; they are not worth refusing all traffic for.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, Protocol

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter, SlidingWindowCounterRateLimiter

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


class Window:
    """One rule applied to one key or tenant: the counter a request is checked against."""

    __slots__ = ("ident", "key", "rule")

    def __init__(self, rule: Rule, ident: tuple[str, ...]) -> None:
        self.rule, self.ident = rule, ident
        self.key = rule.item.key_for(*ident)


Refusal = tuple[Window, float]  # the first window without room, seconds until it has room again
OnSpent = Callable[[Window, float], None]  # a token window used up, and when (epoch seconds) it resets
OnError = Callable[[BaseException], None]


class Counters(Protocol):
    async def admit(self, windows: list[Window]) -> Refusal | None:
        """Count one request in every window, or in none and say which refused (raises on a backend error)."""
        ...

    def charge(self, windows: list[Window], tokens: int, on_spent: OnSpent, on_error: OnError) -> None:
        """Add `tokens` to each window, now or in the background; `on_spent` hears of windows used up."""
        ...


def rules_from_settings(settings: Settings) -> list[Rule]:
    spec: list[tuple[Scope, Kind, str | None]] = [
        ("key", "requests", settings.limit_key_requests),
        ("key", "tokens", settings.limit_key_tokens),
        ("tenant", "requests", settings.limit_tenant_requests),
        ("tenant", "tokens", settings.limit_tenant_tokens),
    ]
    return [Rule(scope, kind, item) for scope, kind, text in spec if text for item in parse_many(text)]


class MemoryCounters:
    """This process's counters (`limits` in memory): no I/O, so checked and charged on the spot."""

    def __init__(self) -> None:
        storage = MemoryStorage()
        self.requests = SlidingWindowCounterRateLimiter(storage)
        self.tokens = FixedWindowRateLimiter(storage)

    async def admit(self, windows: list[Window]) -> Refusal | None:
        for w in windows:
            if not self.requests.test(w.rule.item, *w.ident):
                reset_at = self.requests.get_window_stats(w.rule.item, *w.ident).reset_time
                return w, reset_at - time.time()
        for w in windows:
            self.requests.hit(w.rule.item, *w.ident)
        return None

    def charge(self, windows: list[Window], tokens: int, on_spent: OnSpent, on_error: OnError) -> None:
        for w in windows:
            if not self.tokens.hit(w.rule.item, *w.ident, cost=tokens):
                on_spent(w, self.tokens.get_window_stats(w.rule.item, *w.ident).reset_time)


class Limiter:
    """`admit` before the model is called (raises RateLimited); `charge` the tokens once the answer is known."""

    def __init__(
        self, rules: list[Rule], counters: Counters | None = None, labels: metrics.TenantLabels | None = None
    ) -> None:
        self.rules = rules
        self.counters: Counters = counters or MemoryCounters()
        self.labels = labels or metrics.TenantLabels((), 0)
        self._request_rules = [r for r in rules if r.kind == "requests"]
        self._token_rules = [r for r in rules if r.kind == "tokens"]
        self._spent: dict[str, float] = {}  # window key -> when it resets, for token windows used up
        self._windows: dict[tuple[str, str | None], tuple[list[Window], list[Window]]] = {}
        self._last_error_log = 0.0

    @classmethod
    def from_settings(
        cls, settings: Settings, labels: metrics.TenantLabels | None = None, redis: Any = None
    ) -> Limiter | None:
        """`redis`: the process's `guard.redisbatch.RedisBatch`, when the fleet shares one."""
        rules = rules_from_settings(settings)
        if not rules:
            return None
        if redis is None:
            return cls(rules, MemoryCounters(), labels)
        from guard.limits_redis import RedisCounters

        return cls(rules, RedisCounters(redis), labels)

    async def admit(self, tenant: str, key_hash: str | None) -> None:
        requests, tokens = self._windows_of(tenant, key_hash)
        now = time.time()
        for w in tokens:  # known from the last charge: no round trip on the request path
            until = self._spent.get(w.key, 0.0)
            if until > now:
                self._refuse(w.rule, tenant, until - now)
        if not requests:
            return
        try:
            refused = await self.counters.admit(requests)
        except Exception as exc:
            self.backend_failed(exc)
            return
        if refused is not None:
            self._refuse(refused[0].rule, tenant, refused[1])

    def charge(self, tenant: str, key_hash: str | None, usage: Usage | None) -> None:
        """Add the exchange's tokens to the token windows (the response is already out).

        A replica learns that a window is spent from the answer to its own charge, so each may serve, past a
        budget another replica used up, the requests it has in flight and those that arrive before that answer.
        """
        if not self._token_rules or usage is None or not usage.total_tokens:
            return
        tokens = self._windows_of(tenant, key_hash)[1]
        self.counters.charge(tokens, usage.total_tokens, self._mark_spent, self.backend_failed)

    def backend_failed(self, exc: BaseException) -> None:
        metrics.RATE_LIMIT_BACKEND_ERRORS.inc()
        now = time.monotonic()
        if now - self._last_error_log > 10:  # one line per 10 s, not one per request
            self._last_error_log = now
            log.warning(
                "rate limits not enforced: backend error: %s",
                str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
            )

    # ---------------------------------------------------------------------------------------------------
    def _windows_of(self, tenant: str, key_hash: str | None) -> tuple[list[Window], list[Window]]:
        """The request and token windows of a caller (kept: their keys are built once per caller, not per call)."""
        found = self._windows.get((tenant, key_hash))
        if found is None:
            if len(self._windows) >= 10_000:  # bounded: callers seen long ago are built again when they return
                self._windows.clear()
            found = self._windows[(tenant, key_hash)] = (
                [self._window(r, tenant, key_hash) for r in self._request_rules],
                [self._window(r, tenant, key_hash) for r in self._token_rules],
            )
        return found

    @staticmethod
    def _window(rule: Rule, tenant: str, key_hash: str | None) -> Window:
        return Window(rule, (rule.kind, rule.scope, tenant if rule.scope == "tenant" else key_hash or tenant))

    def _mark_spent(self, window: Window, reset_at: float) -> None:
        self._spent[window.key] = reset_at

    def _refuse(self, rule: Rule, tenant: str, wait_s: float) -> NoReturn:
        retry_after = max(1, math.ceil(wait_s))
        metrics.RATE_LIMITED.labels(rule.scope, rule.kind).inc()
        metrics.TENANT_REQUESTS.labels(self.labels(tenant), "rate_limited").inc()
        whose = "API key" if rule.scope == "key" else f"tenant '{tenant}'"
        raise RateLimited(
            f"rate limit reached for this {whose}: {rule.describe()}; try again in {retry_after} s",
            kind=rule.kind,
            retry_after=retry_after,
        )
