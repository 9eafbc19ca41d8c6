"""The edge's configuration, built by the command line (or by tests).

A leaf: it imports nothing of the edge's I/O. An EdgeConfig is checked when it
is made (ValueError says what cannot work together or is unsafe), so an
invalid one never exists; the command line turns the error into a usage error.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from policy.addresses import Address
from policy.checks import at_least, more_than_zero
from policy.events import Stage
from policy.v1 import policy_pb2 as pb

STARTTLS_MODES = ("no", "opportunistic", "require")
DEFAULT_LISTEN = Address("127.0.0.1", 2525)
DEFAULT_POLICY_SERVER = Address("127.0.0.1", 50051)


@dataclass(frozen=True)
class RelayTarget:
    """`smtp://HOST:PORT` or `lmtp://HOST:PORT`, with `?starttls=require|opportunistic`
    and `&verify=no` (accept the upstream's certificate unchecked)."""

    lmtp: bool
    host: str
    port: int
    starttls: str = "no"
    verify: bool = True

    @classmethod
    def parse(cls, url: str) -> RelayTarget:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("smtp", "lmtp") or not parts.hostname or not port:
            raise ValueError(f"expected smtp://HOST:PORT or lmtp://HOST:PORT, got {url!r}")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        starttls = query.get("starttls", "no")
        if starttls not in STARTTLS_MODES:
            raise ValueError(f"starttls must be no, opportunistic or require, got {starttls!r}")
        verify = query.get("verify", "yes") != "no"
        return cls(parts.scheme == "lmtp", parts.hostname, port, starttls, verify)

    def __str__(self) -> str:
        return f"{'lmtp' if self.lmtp else 'smtp'}://{self.host}:{self.port}"


@dataclass(frozen=True)
class EdgeConfig:
    listen: Address = DEFAULT_LISTEN
    # Policy daemon endpoints; calls are balanced and fail over between them.
    policy_servers: tuple[Address, ...] = (DEFAULT_POLICY_SERVER,)
    hostname: str = field(default_factory=socket.gethostname)
    # The greeting is "220 HOSTNAME BANNER".
    banner: str = "ESMTP smtpedge"
    # This edge's identity and listener metadata, visible to the policy in conn_meta
    # ("edge_id", and each label under its own name). edge_id defaults to the hostname.
    edge_id: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    maildir: Path = Path("mail")
    # Relay to an upstream MTA instead of storing in the Maildir.
    relay: RelayTarget | None = None
    # Seconds to wait for the upstream at each step, and idle connections kept for reuse.
    relay_timeout: float = 30.0
    relay_pool: int = 8
    # Prepend a Received: trace header to accepted messages.
    received_header: bool = True
    # How a transaction is split into messages when smtp_server_split_transaction
    # does not say (policy_pb2.BatchHandling); unspecified: as the policy's listener
    # says, else one message per recipient, KumoMTA's default.
    batch_handling: int = pb.BATCH_HANDLING_UNSPECIFIED
    # Ask the daemon to evaluate and log in dry run: every verdict comes back "continue".
    dry_run: bool = False
    # Streams (each on its own connection) per endpoint; 0: one unary call per event.
    policy_streams: int = 2
    # Seconds the edge waits for a verdict, and per-stage exceptions.
    policy_timeout: float = 0.5
    stage_timeouts: dict[Stage, float] = field(default_factory=dict)
    # Stages that accept the command when no verdict arrives (logged and counted).
    fail_open: frozenset[Stage] = frozenset()
    # Largest message accepted, in bytes (advertised as SIZE); 0: no limit.
    max_message_size: int = 10 * 1024 * 1024
    # Recipients per transaction, and per connection (KumoMTA's
    # max_messages_per_connection, which counts recipients).
    max_recipients: int = 100
    max_messages_per_connection: int = 10_000
    # Concurrent SMTP connections, over all listeners.
    max_connections: int = 5000
    # Seconds a client may go without a recognised command before it is disconnected.
    idle_timeout: float = 300.0
    # Seconds sessions get to finish on SIGTERM/SIGINT.
    shutdown_grace: float = 30.0
    # Where the Prometheus metrics endpoint listens, if anywhere.
    metrics: Address | None = None
    # TLS for SMTP clients: STARTTLS with this certificate; client certificates are
    # requested (and verified) when a CA is given; MAIL needs TLS with require_tls;
    # tls_listen adds a listener that speaks TLS from the start (port 465 style).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    require_tls: bool = False
    tls_listen: Address | None = None
    # TLS to the policy daemons: the CA that signed their certificate, this edge's
    # client certificate and key, and the name to expect in theirs.
    policy_tls_ca: Path | None = None
    policy_tls_cert: Path | None = None
    policy_tls_key: Path | None = None
    policy_tls_server_name: str | None = None
    # Allow plaintext to policy daemons that are not on loopback or a Unix socket.
    allow_plaintext: bool = False
    # The fields above given on the command line or in the environment: the
    # policy's listener (kumo.start_esmtp_listener) shapes the others it sets
    # (hostname, banner, sizes and counts, received_header, batch_handling).
    explicit: frozenset[str] = frozenset()
    # A worker under --workers: shares the listening port with its siblings, and
    # the supervisor reports "listening".
    worker: bool = False

    def __post_init__(self) -> None:
        """Refuses settings that cannot work together or are unsafe (ValueError)."""
        if self.tls_cert is None and (self.require_tls or self.tls_listen):
            raise ValueError("--require-tls and --tls-listen need --tls-cert and --tls-key")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        if (self.policy_tls_cert is None) != (self.policy_tls_key is None):
            raise ValueError("--policy-tls-cert and --policy-tls-key go together")
        if not self.policy_servers:
            raise ValueError("at least one --policy-server is needed")
        at_least(
            {
                "--max-message-size": (self.max_message_size, 0),
                "--policy-streams": (self.policy_streams, 0),
                "--relay-pool": (self.relay_pool, 0),
                "--shutdown-grace": (self.shutdown_grace, 0),
                "--max-recipients": (self.max_recipients, 1),
                "--max-messages-per-connection": (self.max_messages_per_connection, 1),
                "--max-connections": (self.max_connections, 1),
            }
        )
        more_than_zero(
            {
                "--policy-timeout": self.policy_timeout,
                "--relay-timeout": self.relay_timeout,
                "--idle-timeout": self.idle_timeout,
                **{f"--stage-timeout {s.value}": t for s, t in self.stage_timeouts.items()},
            }
        )
        plaintext = self.policy_tls_ca is None and self.policy_tls_cert is None
        if plaintext and not self.allow_plaintext:
            for endpoint in self.policy_servers:
                if not endpoint.is_local:
                    raise ValueError(
                        f"refusing plaintext to the policy daemon at {endpoint}: it is not on "
                        "loopback or a Unix socket (use --policy-tls-ca, or --allow-plaintext "
                        "on a trusted network)"
                    )

    def timeout(self, stage: Stage) -> float:
        return self.stage_timeouts.get(stage, self.policy_timeout)
