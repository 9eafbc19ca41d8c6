"""The daemon's configuration, built by the command line (or by tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServeConfig:
    policy: Path
    listen: str = "127.0.0.1:50051"
    # Seconds in-flight calls get to finish on SIGTERM/SIGINT.
    shutdown_grace: float = 5.0
    # Reload when the policy files change on disk: "events" (file events, with
    # polling as a safety net), "poll" (polling only), or "off".
    watch: str = "events"
    # Seconds between checks of the files (for when file events are not delivered).
    poll_interval: float = 1.0
    # Largest request accepted (a data-phase request carries the message), in bytes.
    max_request_size: int = 64 * 1024 * 1024
