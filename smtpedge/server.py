"""The edge's lifecycle: listen, serve sessions, stop without cutting one in half.

On SIGTERM/SIGINT the listener closes; idle sessions get a 421 at once, busy
ones after the command in progress (a DATA transfer finishes and is answered);
whatever remains after `shutdown_grace` seconds is closed. A second signal
stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

import grpc
from prometheus_client import start_http_server

from policy.v1 import policy_pb2 as pb
from smtpedge.config import EdgeConfig, split_host_port
from smtpedge.delivery import Delivery, MaildirDelivery, RelayDelivery
from smtpedge.handler import PolicyHandler
from smtpedge.maildir import Maildir
from smtpedge.policy_client import PolicyClient
from smtpedge.protocol import EdgeSMTP
from smtpedge.relay import Relay, RelayTarget

log = logging.getLogger("smtpedge.server")


def smtp_tls_context(config: EdgeConfig) -> ssl.SSLContext | None:
    """The context for STARTTLS and the TLS listener, if a certificate is configured."""
    if config.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert, config.tls_key)
    if config.tls_client_ca is not None:
        context.load_verify_locations(config.tls_client_ca)
        context.verify_mode = ssl.CERT_OPTIONAL  # asked for, verified when presented
    return context


def policy_credentials(config: EdgeConfig) -> tuple[grpc.ChannelCredentials | None, str | None]:
    """TLS (with this edge's client certificate, if any) for the policy link."""
    if config.policy_tls_ca is None and config.policy_tls_cert is None:
        return None, None
    read = lambda path: path.read_bytes() if path is not None else None  # noqa: E731
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(config.policy_tls_ca),
        private_key=read(config.policy_tls_key),
        certificate_chain=read(config.policy_tls_cert),
    )
    return credentials, config.policy_tls_server_name


def _raise_file_limit(connections: int) -> None:
    """Each connection is a file descriptor: lift the soft limit as far as allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


class EdgeServer:
    def __init__(self, config: EdgeConfig, on_ready: Callable[[], None] | None = None) -> None:
        self.config = config
        self._on_ready = on_ready
        self.sessions: set[EdgeSMTP] = set()
        self._stop = asyncio.Event()
        self._servers: list[asyncio.Server] = []
        self._policy: PolicyClient | None = None

    async def startup(self) -> None:
        config = self.config
        _raise_file_limit(config.max_connections)
        config.validate()
        self._policy = PolicyClient(
            list(config.policy_servers), config.policy_streams, *policy_credentials(config)
        )
        client = pb.Client(
            edge_id=config.edge_id or config.hostname,
            hostname=config.hostname,
            listener=config.listen,
            labels=config.labels,
        )
        self._delivery = self._make_delivery()
        handler = PolicyHandler(self._policy, client, self._delivery, config)
        loop = asyncio.get_running_loop()
        tls = smtp_tls_context(config)

        def factory(implicit_tls: bool) -> Callable[[], EdgeSMTP]:
            return lambda: EdgeSMTP(
                handler,
                sessions=self.sessions,
                max_connections=config.max_connections,
                hostname=config.hostname,
                ident="ESMTP smtpedge",
                data_size_limit=config.max_message_size,
                timeout=config.idle_timeout,
                loop=loop,
                tls_context=tls,
                implicit_tls=implicit_tls,
                require_tls=config.require_tls,
            )

        addresses = {}
        for name, listen, implicit in (("address", config.listen, False),
                                       ("tls_address", config.tls_listen, True)):  # fmt: skip
            if listen is None:
                continue
            host, port = split_host_port(listen)
            server = await loop.create_server(
                factory(implicit), host, port, backlog=1024, reuse_port=config.worker or None,
                ssl=tls if implicit else None,
            )  # fmt: skip
            self._servers.append(server)
            addresses[name] = f"{host}:{server.sockets[0].getsockname()[1]}"
        if config.metrics:
            metrics_host, metrics_port = split_host_port(config.metrics)
            start_http_server(metrics_port, metrics_host)
        log.info(
            "worker listening" if config.worker else "listening",
            extra={
                **addresses,
                "hostname": config.hostname,
                "policy_servers": list(config.policy_servers),
                "delivery": config.relay or str(config.maildir),
                "starttls": tls is not None,
            },
        )
        if self._on_ready is not None:
            self._on_ready()

    def _make_delivery(self) -> Delivery:
        config = self.config
        if config.relay:
            relay = Relay(
                RelayTarget.parse(config.relay),
                config.hostname,
                config.relay_timeout,
                config.relay_pool,
            )
            return RelayDelivery(relay, config.hostname)
        return MaildirDelivery(Maildir(config.maildir), config.hostname)

    async def shutdown(self) -> None:
        log.info("shutting down", extra={"sessions": len(self.sessions)})
        for server in self._servers:
            server.close()
        for session in list(self.sessions):
            session.shut_down()
        deadline = asyncio.get_running_loop().time() + self.config.shutdown_grace
        while self.sessions and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for session in list(self.sessions):
            if session.transport is not None:
                session.transport.abort()
        if self._policy is not None:
            await self._policy.close()
        await self._delivery.close()
        log.info("stopped")

    async def serve(self) -> None:
        await self.startup()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal)
        try:
            await self._stop.wait()
        finally:
            await self.shutdown()

    def _on_signal(self) -> None:
        if self._stop.is_set():
            raise SystemExit(1)
        self._stop.set()


def run(main: Coroutine[Any, Any, None], loop: str) -> None:
    """Runs the server on the chosen event loop implementation."""
    if loop == "uvloop":
        import uvloop

        uvloop.run(main)
    else:
        asyncio.run(main)
