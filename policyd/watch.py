"""Watches the policy files and reloads when they change and hold still.

File events (watchfiles) make a change visible at once; a poll of the files'
sizes and times catches changes whose events never arrive (some bind mounts,
network file systems). Either way a change counts only once the files have
stayed the same for `settle` seconds, so a file caught mid-write is not
loaded, and then reloads through the same path as SIGHUP and the Reload RPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import watchfiles

from policyd.source import WATCHED_SUFFIXES, PolicySource

log = logging.getLogger("policyd.watch")


async def _events(source: PolicySource, wake: asyncio.Event) -> None:
    try:
        async for _ in watchfiles.awatch(
            source.root,
            watch_filter=lambda _, path: path.endswith(WATCHED_SUFFIXES),
            debounce=50,
            step=10,
        ):
            wake.set()
    except Exception as e:  # e.g. out of inotify watches: polling still works
        log.warning("file events unavailable, polling only", extra={"error": str(e)})


async def watch(
    source: PolicySource,
    reload: Callable[[], Awaitable[object]],
    *,
    events: bool = True,
    poll_interval: float = 1.0,
    settle: float = 0.2,
) -> None:
    wake = asyncio.Event()
    listener = asyncio.create_task(_events(source, wake)) if events else None
    try:
        last = await asyncio.to_thread(source.signature)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), poll_interval)
            wake.clear()
            current = await asyncio.to_thread(source.signature)
            if current == last:
                continue
            while True:  # wait until the files hold still
                await asyncio.sleep(settle)
                again = await asyncio.to_thread(source.signature)
                if again == current:
                    break
                current = again
            last = current
            await reload()
    finally:
        if listener is not None:
            listener.cancel()
