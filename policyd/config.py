"""The daemon's configuration, built by the command line (or by tests).

A leaf: it imports nothing of the daemon. A ServeConfig is checked when it is
made, so one that cannot work, or is unsafe, never exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from policy.addresses import Address, ip_or_none
from policy.checks import at_least, more_than_zero


@dataclass(frozen=True)
class Limits:
    """What one evaluation (or one policy load) may use, and reach."""

    seconds: float = 0.2  # wall clock, host calls included
    instructions: int = 100_000_000  # Lua VM instructions
    slice: int = 200_000  # instructions an inline evaluation may run before it moves to overflow
    memory: int = 128 * 1024 * 1024  # bytes per Lua state
    load_seconds: float = 5.0  # the policy's top level, modules included
    # Where key files named by an absolute path may be read (--secrets-dir):
    # never part of a revision, never logged.
    secrets_dir: Path | None = None


WATCH_MODES = ("events", "poll", "off")
LISTEN = Address("127.0.0.1", 50051)
REDIS_FAILURE_MODES = ("error", "allow")


@dataclass(frozen=True)
class ServeConfig:
    policy: Path
    listen: Address = LISTEN
    # Seconds in-flight calls get to finish on SIGTERM/SIGINT.
    shutdown_grace: float = 5.0
    # Reload when the policy files change on disk: "events" (file events, with
    # polling as a safety net), "poll" (polling only), or "off".
    watch: str = "events"
    # Seconds between checks of the files (for when file events are not delivered).
    poll_interval: float = 1.0
    # Largest message a data-phase request may carry, in bytes.
    max_message_size: int = 32 * 1024 * 1024
    # What one evaluation may use.
    limits: Limits = field(default_factory=Limits)
    # Worker threads (each with its own Lua runtime) for evaluations that outgrow the inline slice.
    overflow_workers: int = 2
    # The Prometheus metrics endpoint, if any.
    metrics: Address | None = None
    # Where the decision log goes: "-" (standard output), a file, or "off".
    decision_log: str = "-"
    # Evaluate and log every decision, but tell edges to continue.
    dry_run: bool = False
    # Start (NOT_SERVING) even when the policy is missing or broken, and serve once
    # a good revision loads.
    wait_for_policy: bool = False
    # Redis for shared throttles (else kumo.configure_redis_throttles, else in memory).
    redis: str | None = None
    # Seconds a throttle waits for Redis, and what a failure means ("error" or "allow").
    redis_timeout: float = 0.1
    redis_failure: str = "error"
    # kumo.dns: name servers (IP addresses with their ports; none: the system's),
    # seconds per try, tries per lookup, and records kept in the cache.
    dns_servers: tuple[Address, ...] = ()
    dns_timeout: float = 1.0
    dns_attempts: int = 2
    dns_cache_size: int = 10000
    # TLS: the daemon's certificate and key; with a client CA, edges must present a
    # certificate it signed (mutual TLS), and their edge id must be its common name.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    # Plaintext only on loopback or a Unix socket, unless this is set.
    allow_plaintext: bool = False
    # Who may call Status and Reload (else: local callers only).
    admin_token_file: Path | None = None
    admin_subjects: tuple[str, ...] = ()
    # Set for a worker under --workers: the supervisor reports "listening", and a
    # Reload RPC reloads the worker's siblings too.
    worker: bool = False

    def __post_init__(self) -> None:
        """ValueError for settings that cannot work together or are unsafe."""
        more_than_zero(
            {
                "--eval-timeout": self.limits.seconds,
                "--eval-instructions": self.limits.instructions,
                "--eval-slice": self.limits.slice,
                "--max-memory": self.limits.memory,
                "--max-message-size": self.max_message_size,
                "--poll-interval": self.poll_interval,
                "--redis-timeout": self.redis_timeout,
                "--dns-timeout": self.dns_timeout,
            }
        )
        at_least(
            {
                "--shutdown-grace": (self.shutdown_grace, 0),
                "--dns-cache-size": (self.dns_cache_size, 0),
                "--overflow-workers": (self.overflow_workers, 1),
                "--dns-attempts": (self.dns_attempts, 1),
            }
        )
        for server in self.dns_servers:
            if server.is_unix or ip_or_none(server.host) is None:
                raise ValueError(f"--dns-server {server}: expected IP or IP:PORT")
        if self.watch not in WATCH_MODES:
            raise ValueError(f"watch must be one of {', '.join(WATCH_MODES)}")
        if self.redis_failure not in REDIS_FAILURE_MODES:
            raise ValueError(f"redis_failure must be one of {', '.join(REDIS_FAILURE_MODES)}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
        if self.tls_cert is None and not self.allow_plaintext and not self.listen.is_local:
            raise ValueError(
                f"refusing plaintext on {self.listen}: not loopback or a Unix socket "
                "(use --tls-cert and --tls-key, or --allow-plaintext on a trusted network)"
            )
