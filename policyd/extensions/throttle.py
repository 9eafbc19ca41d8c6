"""kumo.make_throttle: the spec parsed by the host (policyd/throttle.py), so the
daemon and the policy agree on what it means."""

from __future__ import annotations

from policyd.extensions import Context, HostFunctions
from policyd.throttle import SpecError, ThrottleSpec


def spec(text: str) -> tuple[int | None, int | str, int | None, bool]:
    """A spec's fields, or (None, the error) for kumo.make_throttle to raise."""
    try:
        parsed = ThrottleSpec.parse(text)
    except SpecError as e:
        return None, str(e), None, False
    return parsed.limit, parsed.period, parsed.max_burst, parsed.local


def functions(context: Context) -> HostFunctions:
    return {"spec": spec}
