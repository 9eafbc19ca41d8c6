"""The daemon's lifecycle: load the policy, serve gRPC, reload, stop gracefully.

SIGHUP reloads the policy. SIGTERM and SIGINT report NOT_SERVING on the health
service (so edges send new calls elsewhere), stop accepting calls and give
in-flight ones `shutdown_grace` seconds; a second signal stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from policy.loop import stop_on_signals
from policy.v1 import ADMIN_SERVICE, POLICY_SERVICE
from policy.v1 import policy_pb2_grpc as pb_grpc
from policyd.access import AdminAccess
from policyd.bridge import Bridge
from policyd.config import ServeConfig
from policyd.decisions import DecisionLog
from policyd.dns.cache import DnsCache
from policyd.dns.lookups import Dns
from policyd.dns.sources import NetworkSource
from policyd.overflow import Overflow
from policyd.service import AdminService, PolicyService
from policyd.source import PolicyError, PolicySource
from policyd.store import Engine, RevisionStore
from policyd.throttle import Throttles
from policyd.watch import watch

log = logging.getLogger("policyd.server")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def dns_resolver(config: ServeConfig) -> Dns:
    servers = [(s.host, s.port) for s in config.dns_servers]
    source = NetworkSource(servers, config.dns_timeout, config.dns_attempts)
    return Dns(source, DnsCache(config.dns_cache_size))


class Server:
    def __init__(self, config: ServeConfig, on_ready: Callable[[], None] | None = None) -> None:
        self.config = config
        self._on_ready = on_ready
        self.overflow = Overflow(config.overflow_workers)
        self.throttles = throttles = Throttles(
            config.redis, config.redis_timeout, config.redis_failure
        )
        self.decisions = None if config.decision_log == "off" else DecisionLog(config.decision_log)
        engine = Engine(
            config.limits,
            Bridge(throttles, dns=dns_resolver(config)),
            self.overflow,
            config.max_message_size,
            self.decisions,
            config.dry_run,
        )
        source = PolicySource.at(config.policy, must_exist=not config.wait_for_policy)
        self.store = RevisionStore(source, engine)
        self.health = health_aio.HealthServicer()
        self._stop = asyncio.Event()
        self._grpc: grpc.aio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def startup(self) -> None:
        """Loads the first revision (PolicyError if it is not fit to serve), then serves.

        With wait_for_policy, a policy that does not load is reported and the daemon
        serves anyway: NOT_SERVING, until a good revision is activated.
        """
        try:
            await self.store.load_initial()
        except PolicyError as e:
            if not self.config.wait_for_policy:
                raise
            self.store.record_failure("startup", str(e))
        limit = self.config.max_message_size + 1024 * 1024  # the message plus the rest of a request
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5000),
            ]
        )
        self.service = PolicyService(self.store)
        pb_grpc.add_PolicyServiceServicer_to_server(self.service, server)
        relay = self._relay_reload if self.config.worker else None
        access = AdminAccess(self.config.admin_token_file, self.config.admin_subjects)
        pb_grpc.add_PolicyAdminServicer_to_server(AdminService(self.store, access, relay), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        await self._report_health()
        self.store.listeners.add(lambda _: self._spawn(self._report_health()))
        if self.store.active is not None:  # in the background: Redis may come up later
            self._spawn(self.throttles.warm(self.store.active.evaluator.bridge.redis))
        self.store.listeners.add(
            lambda revision: self._spawn(self.throttles.warm(revision.evaluator.bridge.redis))
        )
        reflection.enable_server_reflection(
            (POLICY_SERVICE, ADMIN_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        port = self._bind(server)
        await server.start()
        self._grpc = server
        if self.config.metrics:
            start_http_server(self.config.metrics.port, self.config.metrics.host)
        if self.config.watch != "off":
            self._spawn(
                watch(
                    self.store.source,
                    lambda: self.store.reload("watch"),
                    events=self.config.watch == "events",
                    poll_interval=self.config.poll_interval,
                )
            )
        message = "worker listening" if self.config.worker else "listening"
        listen = self.config.listen
        bound = listen if listen.is_unix else listen.with_port(port)
        log.info(message, extra={"address": str(bound)})
        if self._on_ready is not None:
            self._on_ready()

    @staticmethod
    def _relay_reload() -> None:
        """Under --workers: the supervisor sends every worker SIGHUP."""
        os.kill(os.getppid(), signal.SIGHUP)

    def _bind(self, server: grpc.aio.Server) -> int:
        """Binds the listen address: TLS when configured, else plaintext (which
        ServeConfig allows only where it is safe)."""
        config, listen = self.config, str(self.config.listen)
        try:
            if config.tls_cert is not None and config.tls_key is not None:
                ca = config.tls_client_ca.read_bytes() if config.tls_client_ca else None
                credentials = grpc.ssl_server_credentials(
                    [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())],
                    root_certificates=ca,
                    require_client_auth=ca is not None,
                )
                port = server.add_secure_port(listen, credentials)
            else:
                port = server.add_insecure_port(listen)
        except RuntimeError:
            port = 0
        if port == 0:
            raise OSError(f"cannot listen on {listen}")
        return port

    async def _report_health(self) -> None:
        """SERVING exactly while a policy revision is active."""
        status = SERVING if self.store.active is not None else NOT_SERVING
        for service in ("", POLICY_SERVICE):
            await self.health.set(service, status)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.health.enter_graceful_shutdown()
        if self._grpc is not None:
            self.service.close_streams()
            log.info("shutting down", extra={"grace_seconds": self.config.shutdown_grace})
            await self._grpc.stop(self.config.shutdown_grace)
        self.overflow.close()
        await self.throttles.close()
        if self.decisions is not None:
            self.decisions.close()
        log.info("stopped")

    async def serve(self) -> None:
        """Runs the daemon as its own process: until SIGTERM/SIGINT, reloading on SIGHUP."""
        await self.startup()
        # Long-lived startup objects leave the collector's view, and young
        # collections happen less often: fewer, shorter pauses per decision.
        gc.freeze()
        gc.set_threshold(20_000, 20, 50)
        stop_on_signals(self._stop, self.decisions.flush if self.decisions else lambda: None)
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGHUP, lambda: self._spawn(self.store.reload("sighup"))
        )
        try:
            await self._stop.wait()
        finally:
            await self.shutdown()
