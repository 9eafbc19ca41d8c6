"""What the asynchronous host functions (kumo.sleep, throttles, kumo.dns) share:
the error a policy sees when one fails, and the deadline of the evaluation
that called it, so a function can give up while the policy still has time to
handle the failure."""

from __future__ import annotations

import contextvars
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("deadline", default=math.inf)


class BridgeError(Exception):
    """A host call that failed; the message becomes the Lua error."""


@contextmanager
def deadline(at: float) -> Iterator[None]:
    """Host calls made inside run until `at` (time.monotonic) at the latest."""
    token = _deadline.set(at)
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left() -> float:
    """Seconds until the calling evaluation's deadline (inf outside one)."""
    return max(0.0, _deadline.get() - time.monotonic())
