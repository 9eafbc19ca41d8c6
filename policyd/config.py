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
