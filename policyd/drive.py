"""The host-call loop: runs one evaluation to its end on a lane (inline on the
event loop's thread, or an overflow worker's), awaiting the asynchronous host
calls (kumo.sleep, throttles, kumo.dns) it makes on the way."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from policyd.bridge import Bridge
from policyd.hostcalls import BridgeError, deadline
from policyd.inputs import Inputs
from policyd.runtime import LuaPolicy, Outcome, Pending


class Lane(Protocol):
    async def run(self, fn: Callable[[LuaPolicy], Any]) -> Any: ...


class InlineLane:
    """Runs an evaluation's steps right here, on the event loop's thread."""

    def __init__(self, policy: LuaPolicy) -> None:
        self.policy = policy

    async def run(self, fn: Callable[[LuaPolicy], Any]) -> Any:
        return fn(self.policy)


def _resume(policy: LuaPolicy, pending: Pending, ok: bool, values: tuple[Any, ...]) -> Any:
    return policy.resume(pending, ok, values)


async def drive(
    lane: Lane,
    bridge: Bridge,
    event: str,
    inputs: Inputs,
    seconds: float,
    slice: int | None,
) -> Outcome:
    """Runs one evaluation of `event` within `seconds`; `slice`, when inline, is
    the instructions it may run before it has to move to an overflow lane."""
    ends = time.monotonic() + seconds
    step = await lane.run(lambda p: p.start(event, *inputs, seconds, slice))
    return await follow(lane, bridge, step, ends)


async def follow(lane: Lane, bridge: Bridge, step: Outcome | Pending, ends: float) -> Outcome:
    """Takes an evaluation from `step` to its end by `ends` (time.monotonic),
    making the host calls it waits for."""
    while isinstance(step, Pending):
        pending = step
        try:
            async with asyncio.timeout(ends - time.monotonic()):
                with deadline(ends):
                    values = await bridge.call(pending.name, pending.args)
            ok = True
        except TimeoutError:
            return Outcome(
                "error",
                error=f"{pending.where}: evaluation ran out of time in kumo.{pending.name}",
                exceeded="time",
            )
        except BridgeError as e:
            ok, values = False, (str(e),)
        step = await lane.run(partial(_resume, pending=pending, ok=ok, values=values))
    assert isinstance(step, Outcome)
    return step
