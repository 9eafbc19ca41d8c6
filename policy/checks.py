"""Checks both programs' configurations make of their numbers: pure functions
that raise ValueError naming the flag, so the command line can say it."""

from __future__ import annotations

from collections.abc import Mapping


def at_least(values: Mapping[str, tuple[float, float]]) -> None:
    """Each flag's (value, least)."""
    for flag, (value, least) in values.items():
        if value < least:
            raise ValueError(f"{flag} must be at least {least}, got {value}")


def more_than_zero(values: Mapping[str, float]) -> None:
    for flag, value in values.items():
        if not value > 0:
            raise ValueError(f"{flag} must be more than 0, got {value}")
