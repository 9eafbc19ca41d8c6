"""kumo.log_debug/info/warn/error: a policy's own lines in the daemon's JSON log,
with the policy file and line that logged them."""

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


def functions(context: Context) -> HostFunctions:
    def write(level: str, where: str, text: str) -> None:
        log.log(
            LEVELS[level],
            "policy log",
            extra={"policy": context.policy, "where": where, "text": text},
        )

    def enabled(level: str) -> bool:
        return log.isEnabledFor(LEVELS[level])

    return {"write": write, "enabled": enabled}
