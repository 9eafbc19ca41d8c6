"""The daemon's configuration, built by the command line (or by tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from policyd.access import is_local_address
from policyd.dns import DnsError, nameserver
from policyd.runtime import Limits


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
    # Largest message a data-phase request may carry, in bytes.
    max_message_size: int = 32 * 1024 * 1024
    # What one evaluation may use.
    limits: Limits = field(default_factory=Limits)
    # Worker threads (each with its own Lua runtime) for evaluations that outgrow the inline slice.
    overflow_workers: int = 2
    # HOST:PORT for the Prometheus metrics endpoint, if any.
    metrics: str | None = None
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
    # kumo.dns: name servers (IP[:PORT]; none: the system's), seconds per try,
    # tries per lookup, and records kept in the cache.
    dns_servers: tuple[str, ...] = ()
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

    def validate(self) -> None:
        """Raises ValueError for settings that cannot work together or are unsafe."""
        for server in self.dns_servers:
            try:
                nameserver(server)
            except (DnsError, ValueError):
                raise ValueError(f"--dns-server {server!r}: expected IP or IP:PORT") from None
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
        if self.tls_cert is None and not self.allow_plaintext and not is_local_address(self.listen):
            raise ValueError(
                f"refusing plaintext on {self.listen}: not loopback or a Unix socket "
                "(use --tls-cert and --tls-key, or --allow-plaintext on a trusted network)"
            )
