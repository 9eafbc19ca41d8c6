"""kumo.make_throttle: the spec parsed by the host (policyd/throttle.py), so the
daemon and the policy agree on what it means, and throttle:explain()'s text,
worded as KumoMTA words it."""

from __future__ import annotations

import math

from policyd.extensions import Context, HostFunctions
from policyd.extensions.time import human
from policyd.throttle import SpecError, ThrottleSpec

_PERIOD_NAMES = {86400: "d", 3600: "h", 60: "m", 1: "s"}


def spec(text: str) -> tuple[int | None, int | str, int | None, bool]:
    """A spec's fields, or (None, the error) for kumo.make_throttle to raise."""
    try:
        parsed = ThrottleSpec.parse(text)
    except SpecError as e:
        return None, str(e), None, False
    return parsed.limit, parsed.period, parsed.max_burst, parsed.local


def canonical(parsed: ThrottleSpec) -> str:
    """The spec as KumoMTA writes it back: `100/h`, `20/1800s`, `local:…`, `,max_burst=B`."""
    name = _PERIOD_NAMES.get(parsed.period)
    period = name if name else f"{parsed.period}s"
    burst = f",max_burst={parsed.max_burst}" if parsed.max_burst is not None else ""
    return f"{'local:' if parsed.local else ''}{parsed.limit}/{period}{burst}"


def _number(n: float) -> str:
    return f"{n:.3f}" if n < 1 else f"{math.ceil(n):,}"


def _rates(per_second: float) -> str:
    return ", ".join(
        f"{_number(per_second * seconds)}/{unit}"
        for unit, seconds in (("s", 1), ("m", 60), ("h", 3600), ("d", 86400))
    )


def explain(parsed: ThrottleSpec) -> str:
    """What a spec allows: its burst (how many at once, and how often that comes
    back) and its overall rate, per second, minute, hour and day."""
    interval_ns = parsed.period * 10**9 // parsed.limit
    burst = parsed.burst
    kind = "explicit" if parsed.max_burst is not None else "implied"
    return (
        f"{canonical(parsed)}\n"
        f"{kind} burst rate {burst} every {human(interval_ns)}, or: "
        f"{_rates(burst / (interval_ns / 10**9))} in that period.\n"
        f"overall rate {_rates(parsed.limit / parsed.period)}"
    )


def functions(context: Context) -> HostFunctions:
    def explain_(limit: int, period: int, max_burst: int | None, local: bool) -> str:
        return explain(ThrottleSpec(limit, period, max_burst, local))

    return {"spec": spec, "explain": explain_}
