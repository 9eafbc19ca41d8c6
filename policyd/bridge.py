"""The asynchronous host functions policies call through `kumo` (kumo.sleep, ...).

A handler that calls one suspends only its own evaluation: its coroutine yields
to the evaluator, which awaits the function here and resumes it with the result
(or with the error, which the policy sees as a Lua error it may catch).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

HostFunction = Callable[..., Awaitable[tuple[Any, ...]]]


class BridgeError(Exception):
    """A host call that failed; the message becomes the Lua error."""


async def _sleep(seconds: float) -> tuple[()]:
    await asyncio.sleep(seconds)
    return ()


class Bridge:
    def __init__(self, functions: dict[str, HostFunction] | None = None) -> None:
        self.functions: dict[str, HostFunction] = {"sleep": _sleep, **(functions or {})}

    async def call(self, name: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
        function = self.functions.get(name)
        if function is None:
            raise BridgeError(f"kumo.{name} is not available in this daemon")
        return await function(*args)
