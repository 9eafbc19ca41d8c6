"""kumo.time: KumoMTA's Time and TimeDelta objects (chrono's DateTime<Utc> and
TimeDelta), parsing and formatting as chrono and humantime do them.

A Time or a TimeDelta crosses between Lua and the host as two integers, whole
seconds and nanoseconds in [0, 10**9), so no precision is lost; arithmetic is
done here on exact integers. Times are limited to the years 1 to 9999 (chrono
reaches further; Python's datetime does not).
"""

from __future__ import annotations

import datetime
import email.utils
import re
import time
from collections.abc import Callable
from typing import Any

from policyd.durations import parse_duration as parse_duration_text
from policyd.extensions import Context, HostFunctions

NS = 1_000_000_000
MAX_DELTA = (2**63 - 1) * 1_000_000  # chrono's TimeDelta bound, in nanoseconds
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MIN = int((datetime.datetime(1, 1, 1, tzinfo=datetime.UTC) - _EPOCH).total_seconds())
_MAX = int(
    (datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC) - _EPOCH).total_seconds()
)
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS: tuple[str, ...] = ("January", "February", "March", "April", "May", "June", "July")
_MONTHS += ("August", "September", "October", "November", "December")

Pair = tuple[int, int]


class TimeError(ValueError):
    """A time or duration that cannot be represented."""


def split(total: int) -> Pair:
    """Nanoseconds as (seconds, nanoseconds in [0, 10**9))."""
    return divmod(total, NS)


def checked_time(total: int) -> Pair:
    seconds, nanos = split(total)
    if not _MIN <= seconds <= _MAX:
        raise TimeError("the time is out of range (years 1 to 9999)")
    return seconds, nanos


def checked_delta(total: int) -> Pair:
    if abs(total) > MAX_DELTA:
        raise TimeError("time would overflow")
    return split(total)


def _datetime(seconds: int) -> datetime.datetime:
    return _EPOCH + datetime.timedelta(seconds=seconds)


def fraction(nanos: int) -> str:
    """chrono's automatic fraction: none, or 3, 6 or 9 digits as needed."""
    if nanos == 0:
        return ""
    if nanos % 1_000_000 == 0:
        return f".{nanos // 1_000_000:03}"
    if nanos % 1000 == 0:
        return f".{nanos // 1000:06}"
    return f".{nanos:09}"


def time_fields(seconds: int, nanos: int) -> dict[str, Any]:
    """The fields of KumoMTA's Time object, and its text (`text`)."""
    t = _datetime(seconds)
    clock = f"{t.hour:02}:{t.minute:02}:{t.second:02}"
    return {
        "year": t.year,
        "month": t.month,
        "day": t.day,
        "hour": t.hour,
        "minute": t.minute,
        "second": t.second,
        "unix_timestamp": seconds,
        "unix_timestamp_millis": seconds * 1000 + nanos // 1_000_000,
        "rfc2822": f"{_DAYS[t.weekday()][:3]}, {t.day} {_MONTHS[t.month - 1][:3]} {t.year:04} "
        f"{clock} +0000",
        "rfc3339": f"{t.date().isoformat()}T{clock}{fraction(nanos)}+00:00",
        "text": f"{t.date().isoformat()} {clock}{fraction(nanos)} UTC",
    }


def _truncated(total: int, unit: int) -> int | None:
    """total // unit rounded toward zero, as chrono's num_* do; None beyond 64 bits."""
    value = abs(total) // unit * (1 if total >= 0 else -1)
    return value if -(2**63) <= value < 2**63 else None


def human(total: int) -> str | None:
    """humantime's text of a duration (`1h 30m`, `500ms`, `0s`); None if negative."""
    if total < 0:
        return None
    seconds, nanos = split(total)
    years, rest = divmod(seconds, 31_557_600)
    months, rest = divmod(rest, 2_630_016)
    days, rest = divmod(rest, 86_400)
    parts = [
        f"{n}{unit}{'s' if n > 1 and plural else ''}"
        for n, unit, plural in (
            (years, "year", True),
            (months, "month", True),
            (days, "day", True),
            (rest // 3600, "h", False),
            (rest % 3600 // 60, "m", False),
            (rest % 60, "s", False),
            (nanos // 1_000_000, "ms", False),
            (nanos // 1000 % 1000, "us", False),
            (nanos % 1000, "ns", False),
        )
        if n
    ]
    return " ".join(parts) or "0s"


def delta_fields(seconds: int, nanos: int) -> dict[str, Any]:
    """The fields of KumoMTA's TimeDelta object."""
    total = seconds * NS + nanos
    return {
        "seconds": seconds + nanos / NS,
        "nanoseconds": _truncated(total, 1),
        "microseconds": _truncated(total, 1000),
        "milliseconds": _truncated(total, 1_000_000),
        "human": human(total),
    }


def from_unix_timestamp(value: int | float) -> Pair:
    if isinstance(value, int):
        return checked_time(value * NS)
    if value != value or value in (float("inf"), float("-inf")):
        raise TimeError("invalid timestamp")
    whole = int(value)
    nanos = max(0, int((value - whole) * 1e9))  # as Rust's `as u32`: negative fractions drop
    return checked_time(whole * NS + nanos)


def with_ymd_hms(year: int, month: int, day: int, hour: int, minute: int, second: int) -> Pair:
    try:
        t = datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.UTC)
    except (ValueError, OverflowError):
        raise TimeError("no such date and time") from None
    return checked_time(int((t - _EPOCH).total_seconds()) * NS)


def parse_rfc3339(text: str) -> Pair:
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise TimeError("not an RFC 3339 timestamp (like 2000-01-02T03:04:05+00:00)")
    y, mo, d, h, mi, s, frac, _z, sign, oh, om = m.groups()
    seconds, _ = with_ymd_hms(int(y), int(mo), int(d), int(h), int(mi), int(s))
    nanos = int((frac or "0")[:9].ljust(9, "0"))
    if sign is not None:
        if int(oh) > 23 or int(om) > 59:
            raise TimeError("invalid time zone offset")
        offset = (int(oh) * 3600 + int(om) * 60) * (1 if sign == "+" else -1)
        seconds -= offset
    return checked_time(seconds * NS + nanos)


def parse_rfc2822(text: str) -> Pair:
    try:
        t = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        raise TimeError("not an RFC 2822 date (like Sun, 2 Jan 2000 03:04:05 +0000)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.UTC)
    return checked_time(int((t - _EPOCH).total_seconds()) * NS)


def parse_duration(value: int | float | str) -> Pair:
    if isinstance(value, int):
        if abs(value) > (2**63 - 1) // 1000:
            raise TimeError("seconds out of range")
        return split(value * NS)
    if isinstance(value, float):
        if not 0 <= value < 2**64:
            raise TimeError("a duration in seconds must be a finite number, not negative")
        whole = int(value)
        return checked_delta(whole * NS + round((value - whole) * 1e9))
    try:
        return checked_delta(round(parse_duration_text(value) * NS))
    except ValueError as e:
        raise TimeError(str(e)) from None


# strftime as chrono reads it ---------------------------------------------------

_SPEC = re.compile(r"%([-_0])?(\.?[369]?f|:{1,3}z|#z|.)?", re.DOTALL)


def _number(value: int, width: int, pad: str | None, default: str = "0") -> str:
    fill = default if pad is None else {"-": "", "_": " ", "0": "0"}[pad]
    return str(value).rjust(width, fill) if fill else str(value)


def _numbers(t: datetime.datetime, seconds: int) -> dict[str, tuple[int, int, str]]:
    iso = t.isocalendar()
    yday = t.timetuple().tm_yday
    return {
        "Y": (t.year, 4, "0"),
        "C": (t.year // 100, 2, "0"),
        "y": (t.year % 100, 2, "0"),
        "m": (t.month, 2, "0"),
        "d": (t.day, 2, "0"),
        "e": (t.day, 2, " "),
        "w": ((t.weekday() + 1) % 7, 1, "0"),
        "u": (t.weekday() + 1, 1, "0"),
        "U": ((yday + 6 - (t.weekday() + 1) % 7) // 7, 2, "0"),
        "W": ((yday + 6 - t.weekday()) // 7, 2, "0"),
        "G": (iso.year, 4, "0"),
        "g": (iso.year % 100, 2, "0"),
        "V": (iso.week, 2, "0"),
        "j": (yday, 3, "0"),
        "H": (t.hour, 2, "0"),
        "k": (t.hour, 2, " "),
        "I": ((t.hour + 11) % 12 + 1, 2, "0"),
        "l": ((t.hour + 11) % 12 + 1, 2, " "),
        "M": (t.minute, 2, "0"),
        "S": (t.second, 2, "0"),
        "s": (seconds, 1, "0"),
    }


_COMPOSITES = {
    "D": "%m/%d/%y",
    "x": "%m/%d/%y",
    "F": "%Y-%m-%d",
    "v": "%e-%b-%Y",
    "R": "%H:%M",
    "T": "%H:%M:%S",
    "X": "%H:%M:%S",
    "r": "%I:%M:%S %p",
    "c": "%a %b %e %H:%M:%S %Y",
    "+": "%Y-%m-%dT%H:%M:%S%.f%:z",
}


def _texts(t: datetime.datetime, nanos: int) -> dict[str, str]:
    return {
        "a": _DAYS[t.weekday()][:3],
        "A": _DAYS[t.weekday()],
        "b": _MONTHS[t.month - 1][:3],
        "h": _MONTHS[t.month - 1][:3],
        "B": _MONTHS[t.month - 1],
        "p": "AM" if t.hour < 12 else "PM",
        "P": "am" if t.hour < 12 else "pm",
        "Z": "UTC",
        "z": "+0000",
        ":z": "+00:00",
        "::z": "+00:00:00",
        ":::z": "+00",
        "#z": "+00",
        "f": f"{nanos:09}",
        ".f": fraction(nanos),
        ".3f": f".{nanos // 1_000_000:03}",
        ".6f": f".{nanos // 1000:06}",
        ".9f": f".{nanos:09}",
        "3f": f"{nanos // 1_000_000:03}",
        "6f": f"{nanos // 1000:06}",
        "9f": f"{nanos:09}",
        "t": "\t",
        "n": "\n",
        "%": "%",
    }


def strftime(seconds: int, nanos: int, fmt: str) -> str:
    """`fmt` as chrono formats it, leniently: what it cannot read stays as written."""
    t = _datetime(seconds)
    numbers, texts = _numbers(t, seconds), _texts(t, nanos)

    def one(m: re.Match[str]) -> str:
        pad, spec = m.group(1), m.group(2)
        if spec in _COMPOSITES:
            return strftime(seconds, nanos, _COMPOSITES[spec])
        if spec in numbers:
            value, width, default = numbers[spec]
            return _number(value, width, pad, default)
        if spec in texts:
            return texts[spec]
        return m.group(0)

    return _SPEC.sub(one, fmt)


# Host functions ----------------------------------------------------------------

Result = tuple[Any, ...]


def _pair(fn: Callable[..., Pair]) -> Callable[..., Result]:
    """A host function returning seconds, nanoseconds, or nil, nil, message."""

    def run(*args: Any) -> Result:
        try:
            return (*fn(*args), None)
        except TimeError as e:
            return None, None, str(e)

    return run


def functions(context: Context) -> HostFunctions:
    table = context.lua.table_from

    def time_add(s: int, n: int, ds: int, dn: int, sign: int) -> Pair:
        return checked_time(s * NS + n + sign * (ds * NS + dn))

    def delta_add(s: int, n: int, ds: int, dn: int, sign: int) -> Pair:
        return checked_delta(s * NS + n + sign * (ds * NS + dn))

    def difference(s: int, n: int, s2: int, n2: int) -> Pair:
        return checked_delta((s - s2) * NS + (n - n2))

    def now() -> Pair:
        return split(time.time_ns())

    def format_(s: int, n: int, fmt: str) -> str:
        return strftime(s, n, fmt)

    return {
        "now": now,
        "monotonic": time.monotonic,
        "from_unix_timestamp": _pair(from_unix_timestamp),
        "with_ymd_hms": _pair(with_ymd_hms),
        "parse_rfc3339": _pair(parse_rfc3339),
        "parse_rfc2822": _pair(parse_rfc2822),
        "parse_duration": _pair(parse_duration),
        "time_add": _pair(time_add),
        "delta_add": _pair(delta_add),
        "difference": _pair(difference),
        "time_fields": lambda s, n: table(time_fields(s, n)),
        "delta_fields": lambda s, n: table(delta_fields(s, n)),
        "format": format_,
    }
