"""kumo.log_debug/info/warn/error: a policy's own lines in the daemon's JSON log,
with the policy file and line that logged them; kumo.set_diagnostic_log_filter
sets the level they need (KumoMTA logs them under the target `lua`), never
below the daemon's own --log-level."""

from __future__ import annotations

import logging

from policyd.extensions import Context, HostFunctions

log = logging.getLogger("policyd.policy")

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
_FILTER_LEVELS = {
    "trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
    "warn": logging.WARNING, "error": logging.ERROR, "off": logging.CRITICAL + 10,
}  # fmt: skip


def filter_level(text: str) -> int | None:
    """The level a tracing-style filter (`kumod=info,lua=debug`, `warn`) gives
    the target `lua`: its own directive, else the bare default, else None."""
    default = None
    for directive in text.split(","):
        target, _, level = directive.strip().rpartition("=")
        value = _FILTER_LEVELS.get(level.strip().lower())
        if value is None:
            raise ValueError(
                f"{directive.strip()!r} is not a filter directive (TARGET=LEVEL or LEVEL)"
            )
        if target.strip() == "lua":
            return value
        if not target:
            default = value
    return default


def functions(context: Context) -> HostFunctions:
    threshold = [logging.NOTSET]

    def set_filter(text: str) -> str | None:
        try:
            level = filter_level(text)
        except ValueError as e:
            return str(e)
        if level is not None:
            threshold[0] = level
        return None

    def write(level: str, where: str, text: str) -> None:
        log.log(
            LEVELS[level],
            "policy log",
            extra={"policy": context.policy, "where": where, "text": text},
        )

    def enabled(level: str) -> bool:
        return LEVELS[level] >= threshold[0] and log.isEnabledFor(LEVELS[level])

    return {"write": write, "enabled": enabled, "set_filter": set_filter}
