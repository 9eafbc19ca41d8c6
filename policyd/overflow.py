"""Runtimes on worker threads for evaluations that outgrow the inline slice.

Evaluations start inline on the event loop, where most finish in microseconds.
One that runs past its slice is abandoned and run again from the start on an
overflow runtime, a state of its own on a worker thread (Lua runs there without
the GIL), so a runaway policy never stalls the requests around it. Each worker
keeps runtimes for the revisions it was asked to run, loaded from the
revision's snapshot in the worker's own thread.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from policyd.config import Limits
from policyd.runtime import LuaPolicy
from policyd.source import Snapshot

T = TypeVar("T")
_KEPT_REVISIONS = 2  # the active one and the one finishing its in-flight work


class _Worker:
    def __init__(self, number: int) -> None:
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"policyd-overflow-{number}")
        self.runtimes: OrderedDict[str, LuaPolicy] = OrderedDict()

    def call(
        self, revision: str, snapshot: Snapshot, limits: Limits, fn: Callable[[LuaPolicy], T]
    ) -> T:
        policy = self.runtimes.get(revision)
        if policy is None:
            policy = self.runtimes[revision] = LuaPolicy(snapshot, limits)
            while len(self.runtimes) > _KEPT_REVISIONS:
                self.runtimes.popitem(last=False)
        else:
            self.runtimes.move_to_end(revision)
        return fn(policy)


class OverflowLane:
    """Runs one evaluation's steps on one worker's runtime for one revision."""

    def __init__(self, worker: _Worker, revision: str, snapshot: Snapshot, limits: Limits) -> None:
        self._worker, self._revision, self._snapshot, self._limits = (
            worker,
            revision,
            snapshot,
            limits,
        )

    async def run(self, fn: Callable[[LuaPolicy], T]) -> T:
        loop = asyncio.get_running_loop()
        w = self._worker
        return await loop.run_in_executor(
            w.executor, w.call, self._revision, self._snapshot, self._limits, fn
        )


class Overflow:
    def __init__(self, workers: int = 2) -> None:
        self._workers = [_Worker(n) for n in range(max(1, workers))]
        self._next = itertools.cycle(self._workers)

    def lane(self, revision: str, snapshot: Snapshot, limits: Limits) -> OverflowLane:
        return OverflowLane(next(self._next), revision, snapshot, limits)

    def close(self) -> None:
        for worker in self._workers:
            worker.executor.shutdown(wait=False, cancel_futures=True)
