"""The edge's configuration, built by the command line (or by tests)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from smtpedge.policy_client import is_local
from smtpedge.stages import Stage


@dataclass(frozen=True)
class EdgeConfig:
    listen: str = "127.0.0.1:2525"
    # Policy daemon endpoints (HOST:PORT); calls are balanced and fail over between them.
    policy_servers: tuple[str, ...] = ("127.0.0.1:50051",)
    hostname: str = field(default_factory=socket.gethostname)
    # This edge's identity and listener metadata, visible to the policy in conn_meta
    # ("edge_id", and each label under its own name). edge_id defaults to the hostname.
    edge_id: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    maildir: Path = Path("mail")
    # smtp://HOST:PORT or lmtp://HOST:PORT to relay to instead of storing in the Maildir.
    relay: str | None = None
    # Seconds to wait for the upstream at each step, and idle connections kept for reuse.
    relay_timeout: float = 30.0
    relay_pool: int = 8
    # Prepend a Received: trace header to accepted messages.
    received_header: bool = True
    # Ask the daemon to evaluate and log in dry run: every verdict comes back "continue".
    dry_run: bool = False
    # Streams (each on its own connection) per endpoint; 0: one unary call per event.
    policy_streams: int = 2
    # Seconds the edge waits for a verdict, and per-stage exceptions.
    policy_timeout: float = 0.5
    stage_timeouts: dict[Stage, float] = field(default_factory=dict)
    # Stages that accept the command when no verdict arrives (logged and counted).
    fail_open: frozenset[Stage] = frozenset()
    # Largest message accepted, in bytes (advertised as SIZE).
    max_message_size: int = 10 * 1024 * 1024
    # Recipients per transaction.
    max_recipients: int = 100
    # Concurrent SMTP connections.
    max_connections: int = 5000
    # Seconds a client may stay silent before it is disconnected.
    idle_timeout: float = 300.0
    # Seconds sessions get to finish on SIGTERM/SIGINT.
    shutdown_grace: float = 30.0
    # HOST:PORT for the Prometheus metrics endpoint, if any.
    metrics: str | None = None
    # TLS for SMTP clients: STARTTLS with this certificate; client certificates are
    # requested (and verified) when a CA is given; MAIL needs TLS with require_tls;
    # tls_listen adds a listener that speaks TLS from the start (port 465 style).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    require_tls: bool = False
    tls_listen: str | None = None
    # TLS to the policy daemons: the CA that signed their certificate, this edge's
    # client certificate and key, and the name to expect in theirs.
    policy_tls_ca: Path | None = None
    policy_tls_cert: Path | None = None
    policy_tls_key: Path | None = None
    policy_tls_server_name: str | None = None
    # Allow plaintext to policy daemons that are not on loopback or a Unix socket.
    allow_plaintext: bool = False
    # A worker under --workers: shares the listening port with its siblings, and
    # the supervisor reports "listening".
    worker: bool = False

    def validate(self) -> None:
        """Raises ValueError for settings that cannot work together or are unsafe."""
        if self.tls_cert is None and (self.require_tls or self.tls_listen):
            raise ValueError("--require-tls and --tls-listen need --tls-cert and --tls-key")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        if (self.policy_tls_cert is None) != (self.policy_tls_key is None):
            raise ValueError("--policy-tls-cert and --policy-tls-key go together")
        plaintext = self.policy_tls_ca is None and self.policy_tls_cert is None
        if plaintext and not self.allow_plaintext:
            for endpoint in self.policy_servers:
                if not is_local(endpoint):
                    raise ValueError(
                        f"refusing plaintext to the policy daemon at {endpoint}: it is not on "
                        "loopback or a Unix socket (use --policy-tls-ca, or --allow-plaintext "
                        "on a trusted network)"
                    )

    def timeout(self, stage: Stage) -> float:
        return self.stage_timeouts.get(stage, self.policy_timeout)


def split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)
