"""The asynchronous host functions policies call through `kumo` (sleep,
throttles, kumo.dns, kumo.spf, msg:dkim_verify, msg:arc_verify, kumo.dmarc).

A handler that calls one suspends only its own evaluation: its coroutine yields
to the evaluator, which awaits the function here and resumes it with the result
(or with the error, which the policy sees as a Lua error it may catch).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from policyd.dns.lookups import Dns
from policyd.extensions import from_binary
from policyd.hostcalls import BridgeError
from policyd.mailauth import arc, dkim, dmarc, spf
from policyd.throttle import Throttles, ThrottleSpec


class Bridge:
    """The host functions of one revision: `redis` is the Redis its policy
    configured for throttles (kumo.configure_redis_throttles), if any."""

    def __init__(
        self,
        throttles: Throttles | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        dns: Dns | None = None,
        redis: str | None = None,
    ) -> None:
        self.throttles = throttles or Throttles()
        self.dns = dns or Dns()
        self.redis = redis
        self._sleep = sleep
        self.functions: dict[str, Callable[..., Awaitable[tuple[Any, ...]]]] = {
            "sleep": self.sleep,
            "throttle": self.throttle,
            **self.dns.functions(),
            "spf.check_host": self.spf_check_host,
            "dkim.verify": self.dkim_verify,
            "arc.verify": self.arc_verify,
            "dmarc.check": self.dmarc_check,
        }

    async def call(self, name: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
        function = self.functions.get(name)
        if function is None:
            raise BridgeError(f"kumo.{name} is not available in this daemon")
        return await function(*args)

    def for_policy(self, redis: str | None) -> Bridge:
        """The same host functions, for a revision whose policy configured `redis`."""
        return Bridge(self.throttles, self._sleep, self.dns, redis)

    async def spf_check_host(
        self, domain: str, ip: str, sender: str, helo: str, receiver: str
    ) -> tuple[str, str]:
        """kumo.spf's check: (disposition, why)."""
        result = await spf.check_host(self.dns, ip, domain, sender, helo, receiver)
        return result.disposition, result.context

    async def dkim_verify(self, data: str) -> tuple[list[dict[str, Any]]]:
        """msg:dkim_verify's results (the message as support.binary sent it)."""
        return (await dkim.verify(self.dns, from_binary(data)),)

    async def arc_verify(self, data: str) -> tuple[dict[str, Any]]:
        """msg:arc_verify's result."""
        return (await arc.verify(self.dns, from_binary(data)),)

    async def dmarc_check(
        self, from_domain: str, dkim_json: str, spf_json: str
    ) -> tuple[str, str, str, dict[str, str]]:
        """kumo.dmarc.check_msg: (disposition, result, reason, props)."""
        dkim_results, spf_result = json.loads(dkim_json), json.loads(spf_json)
        if not isinstance(dkim_results, list):  # an empty Lua table encodes as {}
            dkim_results = list(dkim_results.values()) if isinstance(dkim_results, dict) else []
        if not isinstance(spf_result, dict):
            raise BridgeError("kumo.dmarc.check_msg: the SPF result must be a table")
        found = await dmarc.check(self.dns, from_domain, dkim_results, spf_result)
        return found.disposition, found.result, found.reason, found.props

    async def sleep(self, seconds: float) -> tuple[()]:
        await self._sleep(seconds)
        return ()

    async def throttle(
        self, name: str, limit: int, period: int, max_burst: int | None, local: bool
    ) -> tuple[dict[str, object]]:
        spec = ThrottleSpec(limit, period, max_burst, local)
        result = await self.throttles.use(name, spec, self.redis)
        return (result.as_dict(),)
