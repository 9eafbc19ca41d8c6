"""Starting a server's event loop: uvloop (the default, faster) or asyncio's own."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

LOOPS = ("uvloop", "asyncio")


def run(main: Coroutine[Any, Any, None], loop: str = "uvloop") -> None:
    if loop == "uvloop":
        import uvloop

        uvloop.run(main)
    else:
        asyncio.run(main)
