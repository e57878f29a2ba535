"""The limit counters of a fleet, in Redis: one Lua call per round trip for all the requests waiting on it.

The algorithms and the keys are those of the `limits` library's Redis storage (`acquire_sliding_window.lua`
for requests, `incr_expire.lua` for tokens; keys `LIMITS:{key}` and `LIMITS:{key}/-1`, `LIMITS:key`), so its
tools read these counters; what differs is that a call covers a batch: every admission that arrived while the
last round trip was in flight, every token charge since (`guard.redisbatch`). Near a limit, requests wait for
Redis's answer; far from it (as Redis last said), they are admitted at once and counted with the next round trip
(`RedisCounters`); token charges ride along with the next round trip.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from typing import Any

from guard import metrics
from guard.limits import OnError, OnSpent, Refusal, Window
from guard.redisbatch import Command, RedisBatch, Script
from guard.resp import ReplyError

# Requests from one caller (the same windows) come as a group: ARGV is the number of groups, then per group the
# number of requests c waiting for a decision, the number f already admitted here (to count now), its number of
# windows n and n times (limit, expiry s); KEYS: per window its previous and current key. The f requests are
# counted in each window; then each of the c is admitted when every window has room for it, and counted in each.
# Returns per group {c admitted, {room left in each window}} or, when one was refused (and so were the rest:
# nothing changed for them), {admitted, rooms, 1-based index of the window without room, previous count,
# previous ttl ms, current count, current ttl ms}.
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
local function used(k, a, w)  -- window w's weighted count, and its counters
  local expiry = ARGV[a + 2*w] * 1000
  shift(KEYS[k + 2*w - 1], KEYS[k + 2*w], expiry)
  local pc, pt = state(KEYS[k + 2*w - 1])
  local cc, ct = state(KEYS[k + 2*w])
  return math.floor(pc * pt / expiry) + cc, pc, pt, cc, ct
end
local function refusal(k, a, n)  -- the first window without room for one more request, or nil
  for w = 1, n do
    local count, pc, pt, cc, ct = used(k, a, w)
    if count + 1 > tonumber(ARGV[a + 2*w - 1]) then
      return {w, pc, pt, cc, ct}
    end
  end
  return nil
end
local function hit(k, a, n, times)
  for w = 1, n do
    shift(KEYS[k + 2*w - 1], KEYS[k + 2*w], ARGV[a + 2*w] * 1000)
    local current = KEYS[k + 2*w]
    if redis.call('exists', current) == 1 then
      redis.call('incrby', current, times)
    else
      redis.call('set', current, times, 'PX', ARGV[a + 2*w] * 2000)
    end
  end
end
local out, k, a = {}, 0, 2
for g = 1, tonumber(ARGV[1]) do
  local c, f, n = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 2
  if f > 0 then hit(k, a, n, f) end
  local admitted, refused = 0, nil
  while admitted < c do
    refused = refusal(k, a, n)
    if refused then break end
    hit(k, a, n, 1)
    admitted = admitted + 1
  end
  local rooms = {}
  for w = 1, n do
    rooms[w] = tonumber(ARGV[a + 2*w - 1]) - used(k, a, w)
  end
  out[g] = refused and {admitted, rooms, unpack(refused)} or {admitted, rooms}
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


def margin(window: Window) -> int:
    """How far from its limit a window must be for a request to be admitted without waiting for Redis: the most
    requests the fleet may admit in one window between two of this process's round trips without overshooting."""
    return max(window.rule.item.amount // 10, MIN_MARGIN)


MIN_MARGIN = 32
FRESH_S = 1.0  # what Redis said about a window is trusted this long (then a request waits for a round trip)


class _Group:
    """The requests of one caller (one list of windows) since the last round trip."""

    __slots__ = ("admitted", "waiting", "windows")

    def __init__(self, windows: list[Window]) -> None:
        self.windows = windows
        self.waiting: list[asyncio.Future[Refusal | None]] = []  # requests waiting for Redis's decision
        self.admitted = 0  # requests admitted here without waiting, to be counted with the next round trip


class RedisCounters:
    """Implements `guard.limits.Counters`. Far from its limits (at least `margin` requests of room in every
    window, as Redis last said within `FRESH_S`), a request is admitted at once and counted with the next round
    trip (at most `linger_s` later): no wait on the request path. Nearer, it waits for the next round trip and
    Redis decides, exactly. Charges go in the background."""

    def __init__(self, batch: RedisBatch) -> None:
        self.batch = batch
        self._groups: dict[int, _Group] = {}  # per caller (its list of windows, kept by the Limiter)
        # window key -> (room left, as Redis last said it less what was admitted here since; when it said so)
        self._room: dict[str, tuple[int, float]] = {}
        self._admitted_since: dict[str, int] = {}  # window key -> requests admitted here since the last drain
        self._owed: dict[str, tuple[Window, int, OnSpent, OnError]] = {}  # token window key -> what it is owed

    async def admit(self, windows: list[Window]) -> Refusal | None:
        group = self._groups.get(id(windows))
        if group is None:
            group = self._groups[id(windows)] = _Group(windows)
        if self._far_from_limits(windows):
            group.admitted += 1
            for w in windows:
                room, heard = self._room[w.key]
                self._room[w.key] = (room - 1, heard)
                self._admitted_since[w.key] = self._admitted_since.get(w.key, 0) + 1
            self.batch.later(self._drain_admits)
            return None
        answer: asyncio.Future[Refusal | None] = asyncio.get_running_loop().create_future()
        group.waiting.append(answer)
        self.batch.want(self._drain_admits)
        return await answer

    def charge(self, windows: list[Window], tokens: int, on_spent: OnSpent, on_error: OnError) -> None:
        for w in windows:  # charges to one window between two round trips go as one
            owed = self._owed.get(w.key)
            self._owed[w.key] = (w, tokens + (owed[1] if owed else 0), on_spent, on_error)
        self.batch.later(self._drain_charges)

    def _far_from_limits(self, windows: list[Window]) -> bool:
        now = time.monotonic()
        for w in windows:
            known = self._room.get(w.key)
            if known is None or known[0] <= margin(w) or now - known[1] > FRESH_S:
                return False
        return True

    def _drain_admits(self) -> list[Command]:
        groups, self._groups, self._admitted_since = list(self._groups.values()), {}, {}
        return [self._admit_command(groups)] if groups else []

    def _drain_charges(self) -> list[Command]:
        owed, self._owed = list(self._owed.values()), {}
        return [self._charge_command(owed)] if owed else []

    def _admit_command(self, groups: list[_Group]) -> Command:
        keys: list[str] = []
        argv: list[Any] = [len(groups)]
        for g in groups:
            argv += [len(g.waiting), g.admitted, len(g.windows)]
            for w in g.windows:
                keys += sliding_keys(w.key)
                argv += [w.rule.item.amount, w.rule.item.get_expiry()]

        def answer(reply: Any) -> None:
            if not isinstance(reply, BaseException) and (not isinstance(reply, list) or len(reply) != len(groups)):
                reply = ReplyError(f"unexpected reply to the admission script: {reply!r:.100}")
            now = time.monotonic()
            for g, result in zip(groups, _or_repeat(reply, len(groups)), strict=True):
                if isinstance(result, BaseException):
                    self._failed(g, result)
                    continue
                admitted, rooms, refused = result[0], result[1], result[2:]
                for w, room in zip(g.windows, rooms, strict=True):
                    self._room[w.key] = (room - self._admitted_since.get(w.key, 0), now)
                for i, future in enumerate(g.waiting):
                    if future.done():  # the client went away
                        continue
                    if i < admitted:
                        future.set_result(None)
                    else:
                        window = g.windows[refused[0] - 1]
                        future.set_result((window, reset_in(window.rule.item.get_expiry(), *refused[1:])))

        return Command(ADMIT, keys, argv, answer)

    def _failed(self, group: _Group, exc: BaseException) -> None:
        """Redis did not answer: the next requests of these windows wait for it (and fail open, counted)."""
        for w in group.windows:
            self._room.pop(w.key, None)
        if group.admitted:  # served, and now not counted in the shared windows
            metrics.RATE_LIMIT_BACKEND_ERRORS.inc(group.admitted)
        for future in group.waiting:
            if not future.done():
                future.set_exception(exc)

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
