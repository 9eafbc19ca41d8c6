"""Durations as KumoMTA's configuration writes them: a number of seconds, or
text such as `5 minutes`, `10s` or `1h 30m` (humantime's units)."""

from __future__ import annotations

import re

_UNITS = {
    **dict.fromkeys(("nsec", "ns"), 1e-9),
    **dict.fromkeys(("usec", "us"), 1e-6),
    **dict.fromkeys(("msec", "ms"), 1e-3),
    **dict.fromkeys(("seconds", "second", "secs", "sec", "s"), 1.0),
    **dict.fromkeys(("minutes", "minute", "mins", "min", "m"), 60.0),
    **dict.fromkeys(("hours", "hour", "hrs", "hr", "h"), 3600.0),
    **dict.fromkeys(("days", "day", "d"), 86400.0),
    **dict.fromkeys(("weeks", "week", "w"), 604800.0),
    **dict.fromkeys(("months", "month", "M"), 2630016.0),  # 30.44 days
    **dict.fromkeys(("years", "year", "y"), 31557600.0),  # 365.25 days
}
_TERM = re.compile(r"\s*([0-9]+)\s*([A-Za-z]+)")


def parse_duration(value: object, what: str = "duration") -> float:
    """Seconds, from a non-negative number or a duration text; ValueError else."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{what} must be a number of seconds or a text like '5 minutes'")
    if not isinstance(value, str):
        if not value >= 0 or value == float("inf"):
            raise ValueError(f"{what} must be a finite number of seconds, not {value}")
        return float(value)
    total, pos, text = 0.0, 0, value.strip()
    while pos < len(text):
        match = _TERM.match(text, pos)
        unit = match and _UNITS.get(match.group(2))
        if not match or unit is None:
            raise ValueError(
                f"{what} {value!r}: expected terms like '10s', '5 minutes' or '1h 30m'"
            )
        total += int(match.group(1)) * unit
        pos = match.end()
    if not text:
        raise ValueError(f"{what} must not be empty")
    return total
