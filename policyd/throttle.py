"""Shared throttles (`kumo.make_throttle`): the spec, GCRA, and where counts live.

A throttle allows `limit` uses per `period` seconds, `max_burst` of them at
once (by default all of them). The algorithm is GCRA: each key keeps a
"theoretical arrival time" (TAT); a use moves it `period / limit` seconds on,
and is refused when the TAT would run more than `max_burst` intervals ahead of
now. Counts live in memory (per daemon process) for `local:` specs or when no
Redis is configured, otherwise in Redis under KumoMTA's key
(`lua-user-throttle-NAME:LIMIT:MAX_BURST:PERIOD`) with the same arithmetic on
Redis's own clock (whole seconds), so KumoMTA nodes and every daemon share one
limit.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from policyd import metrics
from policyd.hostcalls import BridgeError

log = logging.getLogger("policyd.throttle")

WARM_RETRY = 0.2  # seconds between tries to reach Redis as a revision activates

_PERIODS = {
    "s": 1, "sec": 1, "second": 1,
    "m": 60, "min": 60, "minute": 60,
    "h": 3600, "hr": 3600, "hour": 3600,
    "d": 86400, "day": 86400,
}  # fmt: skip
_NUMBER = re.compile(r"[0-9][0-9_,]*\Z")
_PERIOD = re.compile(r"([0-9]*)([a-z]+)\Z")


class SpecError(ValueError):
    """A throttle spec that does not parse."""


def _number(text: str, what: str) -> int:
    if not _NUMBER.match(text):
        raise SpecError(f"invalid {what} {text!r}: expected digits, optionally with , or _")
    return int(text.replace(",", "").replace("_", ""))


@dataclass(frozen=True)
class ThrottleSpec:
    """`[local:]QUANTITY/[N]PERIOD[,max_burst=B]`, e.g. `1_000/hr`, `local:20/30minute`."""

    limit: int
    period: int  # seconds
    max_burst: int | None = None
    local: bool = False

    @classmethod
    def parse(cls, text: str) -> ThrottleSpec:
        rest = text.strip()
        local = rest.startswith("local:")
        if local:
            rest = rest[len("local:") :]
        rest, sep, burst = rest.partition(",max_burst=")
        max_burst = _number(burst, "max_burst") if sep else None
        limit_text, slash, period_text = rest.partition("/")
        if not slash:
            raise SpecError(f"expected QUANTITY/PERIOD, got {text!r}")
        limit = _number(limit_text, "quantity")
        match = _PERIOD.match(period_text)
        if match is None or match.group(2) not in _PERIODS:
            raise SpecError(
                f"unknown period {period_text!r} in {text!r}: use s, m, h or d "
                "(sec, min, hr, second, minute, hour, day), optionally after a multiplier"
            )
        multiplier = int(match.group(1)) if match.group(1) else 1
        if limit == 0 or multiplier == 0 or max_burst == 0:
            raise SpecError(f"quantity, multiplier and max_burst must be positive in {text!r}")
        return cls(limit, _PERIODS[match.group(2)] * multiplier, max_burst, local)

    @property
    def burst(self) -> int:
        return self.max_burst if self.max_burst is not None else self.limit

    def key(self, name: str) -> str:
        """KumoMTA's key for a throttle made with kumo.make_throttle(name, spec)."""
        return f"lua-user-throttle-{name}:{self.limit}:{self.burst}:{self.period}"


def _duration(seconds: int) -> dict[str, int]:
    """A duration as KumoMTA hands one to Lua (Rust's Duration, serialized)."""
    return {"secs": seconds, "nanos": 0}


@dataclass(frozen=True)
class Result:
    throttled: bool
    limit: int  # max_burst + 1, as KumoMTA reports it
    remaining: int
    reset_after: int  # whole seconds until the throttle is back to its full burst
    retry_after: int | None  # whole seconds until a refused use would be allowed

    def as_dict(self) -> dict[str, object]:
        """KumoMTA's result table: durations as {secs, nanos}, retry_after only
        when throttled."""
        out: dict[str, object] = {
            "throttled": self.throttled,
            "limit": self.limit,
            "remaining": self.remaining,
            "reset_after": _duration(self.reset_after),
        }
        if self.retry_after is not None:
            out["retry_after"] = _duration(self.retry_after)
        return out


_NS = 10**9


def _units(now: float, limit: int) -> int:
    """`now` in the exact units of gcra(): nanoseconds times the throttle's limit."""
    whole = math.floor(now)
    return (whole * _NS + round((now - whole) * _NS)) * limit


def _seconds(units: int, limit: int) -> int:
    """Whole seconds of a span in gcra() units; a part of a millisecond or more
    counts as one more second, as KumoMTA rounds."""
    whole, part = divmod(units // limit, _NS)
    return whole + (part >= 1_000_000)


def gcra(tat: int | None, now: float, spec: ThrottleSpec) -> tuple[Result, int | None]:
    """One use of a throttle at `now`: the result, and the new TAT to store (None:
    unchanged). Exact: times are integer nanoseconds times `limit`, so the
    interval `period / limit` is a whole number of units, and fifty uses of
    50/minute come to exactly one minute (in floating point they come to more,
    and the fiftieth would be refused)."""
    units_now = _units(now, spec.limit)
    interval = spec.period * _NS
    burst_offset = interval * spec.burst
    tat = units_now if tat is None else max(tat, units_now)
    new_tat = tat + interval
    diff = units_now - (new_tat - burst_offset)
    limit = spec.burst + 1
    if diff < 0:
        remaining = (units_now - (tat - burst_offset)) // interval
        reset, retry = _seconds(tat - units_now, spec.limit), _seconds(-diff, spec.limit)
        return Result(True, limit, remaining, reset, max(retry, 1)), None
    reset = _seconds(new_tat - units_now, spec.limit)
    return Result(False, limit, diff // interval, reset, None), new_tat


class LocalThrottles:
    """Throttle state in this process's memory (`local:` specs, or no Redis)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._tats: dict[str, tuple[int, float]] = {}  # key -> (tat, expires at)
        self._uses = 0

    def use(self, key: str, spec: ThrottleSpec) -> Result:
        now = self.clock()
        tat, expires = self._tats.get(key, (None, 0.0))
        result, new_tat = gcra(tat if expires > now else None, now, spec)
        if new_tat is not None:
            self._tats[key] = (new_tat, now + result.reset_after)
        self._uses += 1
        if self._uses % 10_000 == 0:  # forget keys whose throttle has fully reset
            self._tats = {k: v for k, v in self._tats.items() if v[1] > now}
        return result


# The arithmetic of gcra() run inside Redis on Redis's clock (whole seconds),
# in floating point with the TAT stored as KumoMTA stores it, so every daemon and
# KumoMTA node sees one TAT.
# Returns throttled (0/1), remaining, reset_after, retry_after.
REDIS_GCRA = """
local interval = tonumber(ARGV[2]) / tonumber(ARGV[1])
local burst_offset = interval * tonumber(ARGV[3])
local now = tonumber(redis.call('TIME')[1])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
local diff = now - (new_tat - burst_offset)
local remaining = math.floor(diff / interval)
if remaining < 0 then
  remaining = math.floor((now - (tat - burst_offset)) / interval)
  return {1, remaining, math.ceil(tat - now), math.ceil(-diff)}
end
local reset_after = math.ceil(new_tat - now)
redis.call('SET', KEYS[1], tostring(new_tat), 'EX', reset_after)
return {0, remaining, reset_after, 0}
"""


class RedisThrottles:
    """Throttle state in Redis, shared by every daemon (and KumoMTA node) using it."""

    def __init__(self, url: str, timeout: float) -> None:
        import redis.asyncio as redis

        self.url = url
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self.script = self.client.register_script(REDIS_GCRA)

    async def use(self, key: str, spec: ThrottleSpec) -> Result:
        throttled, remaining, reset_after, retry_after = await self.script(
            keys=[key], args=[spec.limit, spec.period, spec.burst]
        )
        return Result(
            bool(throttled),
            spec.burst + 1,
            int(remaining),
            int(reset_after),
            int(retry_after) if throttled else None,
        )

    async def warm(self) -> None:
        """Connects and loads the script, so the first use pays neither."""
        await self.client.ping()
        await self.client.script_load(REDIS_GCRA)

    async def close(self) -> None:
        await self.client.aclose()


class Throttles:
    """Where each use of a throttle goes, and what a Redis failure means.

    Shared by every revision, so counts survive reloads: the in-memory counts,
    and one Redis client per URL. The URL is the command line's (`redis_url`),
    else the one the revision's policy configured, else none (in memory).
    `on_failure` "error": the policy gets a Lua error (uncaught, the client gets
    421 4.3.0 technical difficulties); "allow": the use counts as not throttled.
    Either way the failure is logged and counted, and the Redis client
    reconnects by itself on the next use.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        timeout: float = 0.1,
        on_failure: str = "error",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.configured_url = redis_url  # from the command line: wins over the policy's
        self.timeout = timeout
        self.on_failure = on_failure
        self.local = LocalThrottles(clock)
        self._redis: dict[str, RedisThrottles] = {}

    def url(self, policy_url: str | None) -> str | None:
        """The Redis a revision's throttles use (None: in memory)."""
        return self.configured_url or policy_url

    def _backend(self, url: str) -> RedisThrottles:
        backend = self._redis.get(url)
        if backend is None:
            backend = self._redis[url] = RedisThrottles(url, self.timeout)
        return backend

    async def warm(self, policy_url: str | None, timeout: float = 5.0) -> None:
        """Sets up the Redis a revision will use before its first throttle does: a
        connection made within a use's own short timeout can fail under load.
        Tried again until `timeout` (each try has only a use's short timeout, which
        a loaded machine can miss); a Redis still not there is logged, and uses
        connect when they come."""
        url = self.url(policy_url)
        if url is None:
            return
        from redis.exceptions import RedisError

        loop = asyncio.get_running_loop()
        ends = loop.time() + timeout
        while True:
            try:
                async with asyncio.timeout_at(ends):
                    await self._backend(url).warm()
                return
            except (RedisError, OSError, TimeoutError) as e:
                if loop.time() + WARM_RETRY >= ends:
                    log.warning("redis not reachable yet", extra={"error": repr(e)})
                    return
            await asyncio.sleep(WARM_RETRY)

    async def use(self, name: str, spec: ThrottleSpec, policy_url: str | None = None) -> Result:
        key = spec.key(name)
        url = self.url(policy_url)
        if spec.local or url is None:
            return self.local.use(key, spec)
        from redis.exceptions import RedisError  # redis is imported only when used

        try:
            return await self._backend(url).use(key, spec)
        except (RedisError, OSError, TimeoutError) as e:
            metrics.THROTTLE_FAILURES.labels(self.on_failure).inc()
            log.warning(
                "redis throttle failed",
                extra={
                    "throttle": name,
                    "key": key,
                    "error": repr(e),
                    "on_failure": self.on_failure,
                },
            )
            if self.on_failure == "allow":
                return Result(False, spec.burst + 1, spec.burst, 0, None)
            raise BridgeError(f"throttle '{name}': redis unavailable ({type(e).__name__})") from e

    async def close(self) -> None:
        for backend in self._redis.values():
            await backend.close()
        self._redis.clear()
