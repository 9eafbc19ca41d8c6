"""The edge's side of the policy contract: one verdict per SMTP event, within a deadline.

Requests go over long-lived bidirectional streams (policy.v1.PolicyService/Stream),
several per daemon endpoint, each on its own connection: requests queued while
a batch is being written go out together in the next one, and verdicts come
back matched by request id. Each stream also tells which events the daemon's
active revision handles, so the edge can skip the rest (`handles`). While no
stream is up, calls go unary.

Several endpoints may be given; a DNS name that resolves to several addresses
is balanced round-robin within its channel, and gRPC health checking keeps
calls off daemons that are not SERVING. A request whose stream breaks, or that
an endpoint cannot take (UNAVAILABLE), is tried on the next one, all within
the one deadline. Streams and channels reconnect by themselves, so the edge
can start before any daemon and recovers when one comes back.

A call that fails or runs out of time yields None, never a "continue": the
caller turns None into the fail-mode reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import json
import logging
import time

import grpc

from policy.v1 import policy_pb2 as pb
from policy.v1 import policy_pb2_grpc as pb_grpc

log = logging.getLogger("smtpedge.policy")

POLICY_SERVICE = pb.DESCRIPTOR.services_by_name["PolicyService"].full_name

_SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": POLICY_SERVICE},
    }
)
_CHANNEL_OPTIONS = [
    ("grpc.service_config", _SERVICE_CONFIG),
    ("grpc.use_local_subchannel_pool", 1),  # a connection per channel, so per stream
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 10000),
    ("grpc.keepalive_timeout_ms", 5000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_send_message_length", -1),
]


class StreamLost(Exception):
    """The stream a request was on broke before its verdict came."""


class Refused(Exception):
    """The daemon could not make sense of a request (INVALID_ARGUMENT)."""


def is_local(endpoint: str) -> bool:
    """A Unix socket, or a loopback address (localhost included)."""
    if endpoint.startswith("unix:"):
        return True
    host = endpoint.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def channel_target(endpoint: str) -> str:
    """A gRPC target for HOST:PORT: IP literals as such, names through DNS (all
    addresses); unix:/PATH as given."""
    if endpoint.startswith("unix:"):
        return endpoint
    host, _, port = endpoint.rpartition(":")
    host = host.strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return f"dns:///{host}:{port}"
    return f"ipv6:[{ip}]:{port}" if ip.version == 6 else f"ipv4:{ip}:{port}"


class Connection:
    """One channel to one endpoint: a unary stub and (`stream`) a long-lived stream."""

    def __init__(
        self,
        endpoint: str,
        stream: bool = True,
        credentials: grpc.ChannelCredentials | None = None,
        server_name: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        target = channel_target(endpoint)
        if credentials is None:
            self.channel = grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS)
        else:
            options = list(_CHANNEL_OPTIONS)
            if server_name:
                options.append(("grpc.ssl_target_name_override", server_name))
            self.channel = grpc.aio.secure_channel(target, credentials, options=options)
        self.unary = pb_grpc.PolicyServiceStub(self.channel).Evaluate
        self._stream = pb_grpc.PolicyServiceStub(self.channel).Stream
        self.handled: frozenset[str] | None = None  # set while the stream is up
        self._pending: dict[int, asyncio.Future[pb.Verdict]] = {}
        self._outbox: list[pb.EvaluateRequest] = []
        self._wake = asyncio.Event()
        self._ids = itertools.count(1)
        self._task = asyncio.get_running_loop().create_task(self._keep_stream()) if stream else None

    @property
    def up(self) -> bool:
        return self.handled is not None

    def submit(self, request: pb.EvaluateRequest) -> tuple[int, asyncio.Future[pb.Verdict]]:
        """Queues a request on the stream; the future gets its verdict."""
        request_id = next(self._ids)
        request.request_id = request_id
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._outbox.append(request)
        self._wake.set()
        return request_id, future

    def forget(self, request_id: int) -> None:
        self._pending.pop(request_id, None)

    async def _keep_stream(self) -> None:
        backoff = 0.05
        while True:
            call = self._stream(wait_for_ready=True)
            writer = asyncio.get_running_loop().create_task(self._write(call))
            try:
                async for replies in call:
                    if replies.HasField("policy"):
                        self._policy_info(replies.policy)
                        backoff = 0.05
                    for verdict in replies.verdicts:
                        future = self._pending.pop(verdict.request_id, None)
                        if future is not None and not future.done():
                            future.set_result(verdict)
                    for error in replies.errors:
                        future = self._pending.pop(error.request_id, None)
                        if future is not None and not future.done():
                            future.set_exception(Refused(error.message))
            except grpc.aio.AioRpcError as e:
                log.info(
                    "policy stream lost", extra={"server": self.endpoint, "status": e.code().name}
                )
            finally:
                self.handled = None
                writer.cancel()
                call.cancel()
                lost, self._pending = self._pending, {}
                self._outbox.clear()
                for future in lost.values():
                    if not future.done():
                        future.set_exception(StreamLost(self.endpoint))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    def _policy_info(self, info: pb.PolicyInfo) -> None:
        message = "policy stream up" if self.handled is None else "policy revision changed"
        self.handled = frozenset(info.handled_events)
        log.info(
            message,
            extra={
                "server": self.endpoint,
                "revision": info.revision,
                "handled_events": sorted(self.handled),
            },
        )

    async def _write(self, call: grpc.aio.StreamStreamCall) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(0)  # let the sessions that are ready queue theirs: bigger batches
            self._wake.clear()
            batch, self._outbox = self._outbox, []
            if batch:
                await call.write(pb.RequestBatch(requests=batch))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.channel.close()


class PolicyClient:
    def __init__(
        self,
        endpoints: list[str],
        streams_per_endpoint: int = 2,
        credentials: grpc.ChannelCredentials | None = None,
        server_name: str | None = None,
    ) -> None:
        """`streams_per_endpoint` 0: unary calls only (and no skipping of unhandled events)."""
        self.endpoints = endpoints
        self.connections = [
            Connection(endpoint, streams_per_endpoint > 0, credentials, server_name)
            for endpoint in endpoints
            for _ in range(max(1, streams_per_endpoint))
        ]
        self._next = 0

    def handles(self, event: str) -> bool:
        """False only when every daemon heard from has no handler for `event`."""
        handled = None
        for connection in self.connections:
            if connection.handled is not None:
                if event in connection.handled:
                    return True
                handled = connection.handled
        return handled is None

    def _order(self) -> list[Connection]:
        """Connections to try, round-robin, those with a stream up first."""
        count = len(self.connections)
        start = self._next
        self._next = (start + 1) % count
        rotated = self.connections[start:] + self.connections[:start]
        return [c for c in rotated if c.up] + [c for c in rotated if not c.up]

    async def evaluate(self, request: pb.EvaluateRequest, timeout: float) -> pb.Verdict | None:
        deadline = time.monotonic() + timeout
        problem = "DEADLINE_EXCEEDED"
        for connection in self._order()[: max(3, len(self.connections))]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                if connection.up:
                    request_id, future = connection.submit(request)
                    try:
                        async with asyncio.timeout(remaining):
                            return await future
                    finally:
                        connection.forget(request_id)
                return await connection.unary(request, timeout=remaining)
            except (StreamLost, Refused) as e:
                problem = f"{type(e).__name__}: {e}"
                if isinstance(e, Refused):
                    break
            except grpc.aio.AioRpcError as e:
                problem = f"{e.code().name}: {e.details()}"
                if e.code() != grpc.StatusCode.UNAVAILABLE:
                    break
            except TimeoutError:
                break
        log.warning(
            "no verdict",
            extra={"session_id": request.session.id, "event": request.event, "problem": problem},
        )
        return None

    async def close(self) -> None:
        for connection in self.connections:
            await connection.close()
