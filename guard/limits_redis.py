"""The limit counters of a fleet, in Redis: one Lua call per round trip for all the requests waiting on it.

The algorithms and the keys are those of the `limits` library's Redis storage (`acquire_sliding_window.lua`
for requests, `incr_expire.lua` for tokens; keys `LIMITS:{key}` and `LIMITS:{key}/-1`, `LIMITS:key`), so its
tools read these counters; what differs is that a call covers a batch: every admission that arrived while the
last round trip was in flight, every token charge since (`guard.redisbatch`). Requests wait for their answer;
token charges ride along with the next round trip.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from typing import Any

from guard.limits import OnError, OnSpent, Refusal, Window
from guard.redisbatch import Command, RedisBatch, Script
from guard.resp import ReplyError

# Requests from one caller (the same windows) come as a group: ARGV is the number of groups, then per group its
# number of requests c, its number of windows n and n times (limit, expiry s); KEYS: per window its previous and
# current key. Each request is admitted when every window has room for it, and then counted in each. Returns
# per group {requests admitted} or, when one was refused (and so were the rest: nothing changed for them),
# {admitted, 1-based index of the window without room, previous count, previous ttl ms, current count,
# current ttl ms}.
ADMIT = Script("""
local function shift(previous, current, expiry)
  local ttl = tonumber(redis.call('pttl', current))
  if ttl > 0 and ttl < expiry then  -- the current window is over: it becomes the previous one
    redis.call('rename', current, previous)
    redis.call('set', current, 0, 'PX', ttl + expiry)
  end
end
local function state(key)
  local ttl = tonumber(redis.call('pttl', key))
  return tonumber(redis.call('get', key)) or 0, ttl > 0 and ttl or 0
end
local function refusal(k, a, n)  -- the first window without room for one more request, or nil
  for w = 1, n do
    local limit, expiry = tonumber(ARGV[a + 2*w - 1]), ARGV[a + 2*w] * 1000
    shift(KEYS[k + 2*w - 1], KEYS[k + 2*w], expiry)
    local pc, pt = state(KEYS[k + 2*w - 1])
    local cc, ct = state(KEYS[k + 2*w])
    if math.floor(pc * pt / expiry) + cc + 1 > limit then
      return {w, pc, pt, cc, ct}
    end
  end
  return nil
end
local out, k, a = {}, 0, 2
for g = 1, tonumber(ARGV[1]) do
  local c, n = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 1
  local admitted, refused = 0, nil
  while admitted < c do
    refused = refusal(k, a, n)
    if refused then break end
    for w = 1, n do
      local current = KEYS[k + 2*w]
      if redis.call('exists', current) == 1 then
        redis.call('incr', current)
      else
        redis.call('set', current, 1, 'PX', ARGV[a + 2*w] * 2000)
      end
    end
    admitted = admitted + 1
  end
  out[g] = refused and {admitted, unpack(refused)} or {admitted}
  k, a = k + 2*n, a + 2*n + 1
end
return out
""")

# KEYS: fixed windows; ARGV: per key (cost, expiry s). Returns per key {count after the charge, ttl ms}.
CHARGE = Script("""
local out = {}
for i, key in ipairs(KEYS) do
  local cost = tonumber(ARGV[2*i - 1])
  local count = redis.call('incrby', key, cost)
  if count == cost then
    redis.call('expire', key, ARGV[2*i])
  end
  out[i] = {count, redis.call('pttl', key)}
end
return out
""")

PREFIX = "LIMITS"  # the `limits` library's default key prefix


@functools.lru_cache(maxsize=10_000)
def sliding_keys(key: str) -> tuple[str, str]:
    """The previous and current window's keys (braces: one cluster slot for both)."""
    return f"{PREFIX}:{{{key}}}/-1", f"{PREFIX}:{{{key}}}"


def reset_in(expiry_s: int, previous: int, previous_ttl_ms: int, current: int, current_ttl_ms: int) -> float:
    """Seconds until the window has room again, as `limits` computes a sliding window's reset time."""
    soonest = min(
        (previous_ttl_ms / 1000) % (expiry_s / previous) if previous else math.inf,
        (current_ttl_ms / 1000) % expiry_s if current else math.inf,
    )
    return soonest if soonest != math.inf else float(expiry_s)


def _or_repeat(reply: Any, n: int) -> list[Any]:
    return [reply] * n if isinstance(reply, BaseException) else list(reply)


class RedisCounters:
    """Implements `guard.limits.Counters`: admissions wait for the next round trip, charges go in the background."""

    def __init__(self, batch: RedisBatch) -> None:
        self.batch = batch
        # per caller (its list of windows, kept by the Limiter), the requests waiting for the next round trip
        self._admits: dict[int, tuple[list[Window], list[asyncio.Future[Refusal | None]]]] = {}
        self._owed: dict[str, tuple[Window, int, OnSpent, OnError]] = {}  # token window key -> what it is owed

    async def admit(self, windows: list[Window]) -> Refusal | None:
        answer: asyncio.Future[Refusal | None] = asyncio.get_running_loop().create_future()
        group = self._admits.get(id(windows))
        if group is None:
            self._admits[id(windows)] = (windows, [answer])
        else:
            group[1].append(answer)
        self.batch.want(self._drain_admits)
        return await answer

    def charge(self, windows: list[Window], tokens: int, on_spent: OnSpent, on_error: OnError) -> None:
        for w in windows:  # charges to one window between two round trips go as one
            owed = self._owed.get(w.key)
            self._owed[w.key] = (w, tokens + (owed[1] if owed else 0), on_spent, on_error)
        self.batch.later(self._drain_charges)

    def _drain_admits(self) -> list[Command]:
        admits, self._admits = list(self._admits.values()), {}
        return [self._admit_command(admits)] if admits else []

    def _drain_charges(self) -> list[Command]:
        owed, self._owed = list(self._owed.values()), {}
        return [self._charge_command(owed)] if owed else []

    def _admit_command(self, admits: list[tuple[list[Window], list[asyncio.Future[Refusal | None]]]]) -> Command:
        keys: list[str] = []
        argv: list[Any] = [len(admits)]
        for windows, answers in admits:
            argv += [len(answers), len(windows)]
            for w in windows:
                keys += sliding_keys(w.key)
                argv += [w.rule.item.amount, w.rule.item.get_expiry()]

        def answer(reply: Any) -> None:
            if not isinstance(reply, BaseException) and (not isinstance(reply, list) or len(reply) != len(admits)):
                reply = ReplyError(f"unexpected reply to the admission script: {reply!r:.100}")
            for (windows, answers), result in zip(admits, _or_repeat(reply, len(admits)), strict=True):
                failed = isinstance(result, BaseException)
                admitted, refused = (0, []) if failed else (result[0], result[1:])
                for i, future in enumerate(answers):
                    if future.done():  # the client went away
                        continue
                    if failed:
                        future.set_exception(result)
                    elif i < admitted:
                        future.set_result(None)
                    else:
                        window = windows[refused[0] - 1]
                        future.set_result((window, reset_in(window.rule.item.get_expiry(), *refused[1:])))

        return Command(ADMIT, keys, argv, answer)

    def _charge_command(self, owed: list[tuple[Window, int, OnSpent, OnError]]) -> Command:
        keys = [f"{PREFIX}:{w.key}" for w, *_ in owed]
        argv: list[Any] = [x for w, tokens, *_ in owed for x in (tokens, w.rule.item.get_expiry())]

        def answer(reply: Any) -> None:
            if isinstance(reply, BaseException):
                for on_error in {id(o[3]): o[3] for o in owed}.values():
                    on_error(reply)
                return
            now = time.time()
            for (w, _, on_spent, _), (count, ttl_ms) in zip(owed, reply, strict=True):
                if count > w.rule.item.amount:
                    on_spent(w, now + max(ttl_ms, 0) / 1000)

        return Command(CHARGE, keys, argv, answer)
