"""The edge's lifecycle: listen, serve sessions, stop without cutting one in half.

`EdgeServer(config)` builds the parts (policy client, delivery, handler, the
session registry) and owns `startup()` (bind, then log where it listens),
`serve()` and `shutdown()`. On SIGTERM/SIGINT the listeners close; idle
sessions get a 421 at once, busy ones after the command in progress (a DATA
transfer finishes and is answered); whatever remains after `shutdown_grace`
seconds is cut off. A second signal stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import grpc
from prometheus_client import start_http_server

from policy.addresses import Address, join
from policy.loop import stop_on_signals
from policy.v1 import policy_pb2 as pb
from smtpedge.config import EdgeConfig
from smtpedge.delivery import Delivery, MaildirDelivery, RelayDelivery
from smtpedge.handler import PolicyHandler
from smtpedge.listener_params import params
from smtpedge.maildir import Maildir
from smtpedge.policy_client import PolicyClient
from smtpedge.relay import Relay
from smtpedge.smtp import Sessions, Settings

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

    def read(path: Path | None) -> bytes | None:
        return path.read_bytes() if path is not None else None

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
        self._stop = asyncio.Event()
        self._servers: list[asyncio.Server] = []
        self._policy: PolicyClient | None = None
        self._delivery: Delivery | None = None
        self.sessions: Sessions | None = None

    async def startup(self) -> None:
        config = self.config
        _raise_file_limit(config.max_connections)
        self._policy = PolicyClient(
            list(config.policy_servers), config.policy_streams, *policy_credentials(config)
        )
        client = pb.Client(
            edge_id=config.edge_id or config.hostname,
            hostname=config.hostname,
            listener=str(config.listen),
            labels=config.labels,
        )
        self._delivery = self._make_delivery()
        handler = PolicyHandler(self._policy, client, self._delivery, config)
        self.sessions = Sessions(handler, config.max_connections, config.hostname)
        tls = smtp_tls_context(config)
        addresses = {"address": await self._listen(config.listen, self._settings(tls), None)}
        if config.tls_listen is not None:
            implicit = self._settings(None)  # TLS from the first byte: no STARTTLS
            addresses["tls_address"] = await self._listen(config.tls_listen, implicit, tls)
        if config.metrics is not None:
            start_http_server(config.metrics.port, config.metrics.host)
        log.info(
            "worker listening" if config.worker else "listening",
            extra={
                **addresses,
                "hostname": config.hostname,
                "policy_servers": [str(a) for a in config.policy_servers],
                "delivery": str(config.relay or config.maildir),
                "starttls": tls is not None,
            },
        )
        if self._on_ready is not None:
            self._on_ready()

    def _settings(self, starttls: ssl.SSLContext | None) -> Callable[[int], Settings]:
        """One listener's settings for a session on a port: the edge's flags and the
        policy's listener for that port (listener_params.py), rebuilt (and logged)
        only when the policy's listener changes."""
        config, policy = self.config, self._policy
        assert policy is not None
        made: dict[int, tuple[pb.Listener | None, Settings]] = {}

        def settings(port: int) -> Settings:
            listener = policy.listener(port)
            known = made.get(port)
            if known is not None and known[0] == listener:
                return known[1]
            shaped, from_policy = params(config, listener)
            if from_policy:
                log.info(
                    "listener shaped by the policy",
                    extra={"port": port, "from_policy": from_policy, **asdict(shaped)},
                )
            made[port] = (
                listener,
                Settings.shaped(
                    shaped,
                    idle_timeout=config.idle_timeout,
                    starttls=starttls,
                    require_tls=config.require_tls,
                ),
            )
            return made[port][1]

        return settings

    async def _listen(
        self, address: Address, settings: Callable[[int], Settings], tls: ssl.SSLContext | None
    ) -> str:
        """Starts one listener; returns the address it bound (port 0: the one chosen)."""
        assert self.sessions is not None
        server = await asyncio.get_running_loop().create_server(
            self.sessions.factory(settings, self.config.idle_timeout),
            address.host,
            address.port,
            backlog=1024,
            reuse_port=self.config.worker or None,
            ssl=tls,
        )
        self._servers.append(server)
        return join(address.host, server.sockets[0].getsockname()[1])

    def _make_delivery(self) -> Delivery:
        config = self.config
        if config.relay is not None:
            relay = Relay(config.relay, config.hostname, config.relay_timeout, config.relay_pool)
            return RelayDelivery(relay, config.hostname)
        return MaildirDelivery(Maildir(config.maildir), config.hostname)

    async def shutdown(self) -> None:
        sessions = self.sessions
        log.info("shutting down", extra={"sessions": len(sessions.open) if sessions else 0})
        for server in self._servers:
            server.close()
        loop = asyncio.get_running_loop()
        if sessions is not None:
            sessions.shut_down()
            deadline = loop.time() + self.config.shutdown_grace
            while sessions.open and loop.time() < deadline:
                await asyncio.sleep(0.05)
            await sessions.abort()
        if self._policy is not None:
            await self._policy.close()
        if self._delivery is not None:
            await self._delivery.close()
        log.info("stopped")

    async def serve(self) -> None:
        await self.startup()
        stop_on_signals(self._stop)
        try:
            await self._stop.wait()
        finally:
            await self.shutdown()
