"""Starting a server's event loop (uvloop, the default and faster, or asyncio's
own) and stopping it on a signal."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("policy.loop")

LOOPS = ("uvloop", "asyncio")


def run(main: Coroutine[Any, Any, None], loop: str = "uvloop") -> None:
    if loop == "uvloop":
        import uvloop

        uvloop.run(main)
    else:
        asyncio.run(main)


def stop_on_signals(stop: asyncio.Event, before_exit: Callable[[], None] = lambda: None) -> None:
    """SIGTERM or SIGINT sets `stop` (the server then stops gracefully); a second
    one ends the process at once, with exit status 1, after `before_exit`
    (flushing what is buffered). Nothing acknowledged is lost that way: a message
    is durable before its 250."""

    def on_signal(signum: int) -> None:
        if not stop.is_set():
            stop.set()
            return
        log.warning(
            "second signal: stopping at once", extra={"signal": signal.Signals(signum).name}
        )
        before_exit()
        logging.shutdown()
        os._exit(1)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
