"""The edge's configuration, built by the command line (or by tests)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class EdgeConfig:
    listen: str = "127.0.0.1:2525"
    policy_server: str = "127.0.0.1:50051"
    hostname: str = field(default_factory=socket.gethostname)
    maildir: Path = Path("mail")
    # Seconds the edge waits for a verdict.
    policy_timeout: float = 0.5
    # Largest message accepted, in bytes (advertised as SIZE).
    max_message_size: int = 10 * 1024 * 1024
    # Seconds a client may stay silent before it is disconnected.
    idle_timeout: float = 300.0
    # Seconds sessions get to finish on SIGTERM/SIGINT.
    shutdown_grace: float = 30.0


def split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)
