"""Which of a policy's listeners shapes a session: the one on the port the
session came in by, else the first. The daemon's relaying check and the edges
choose by the same rule."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def for_port(listeners: Sequence[T], port: int, port_of: Callable[[T], int]) -> T | None:
    """The listener on `port`, else the first, else None (the policy started none)."""
    return next((one for one in listeners if port_of(one) == port), None) or (
        listeners[0] if listeners else None
    )
