"""The edge's side of the policy contract: one verdict per SMTP event, within a deadline.

Requests go over long-lived bidirectional streams (policy.v1.PolicyService/Stream),
several per daemon endpoint, each on its own connection: requests queued while
a batch is being written go out together in the next one, and verdicts come
back matched by request id. Each stream also tells which events the daemon's
active revision handles, so the edge can skip the rest (`handles`). While no
stream is up, calls go unary.

Several endpoints may be given, and a DNS name that resolves to several
addresses counts as one endpoint per address (re-resolved as replicas come
and go); calls go round-robin over them, and gRPC health checking keeps calls
off daemons that are not SERVING. A request whose stream breaks, or that
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
import socket
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


# Seconds a connection to an address its name no longer resolves to is kept for
# the calls already on it (well beyond any stage deadline).
RETIRE_AFTER = 30.0


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


def is_name(endpoint: str) -> bool:
    """HOST:PORT with a host name rather than an IP address."""
    if endpoint.startswith("unix:"):
        return False
    try:
        ipaddress.ip_address(endpoint.rpartition(":")[0].strip("[]"))
    except ValueError:
        return True
    return False


async def resolve(endpoint: str, timeout: float = 2.0) -> set[str]:
    """The IP:PORT addresses a HOST:PORT name resolves to (empty when it does not)."""
    host, _, port = endpoint.rpartition(":")
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, ValueError) as e:  # UnicodeError: a malformed name
        log.debug("cannot resolve", extra={"server": endpoint, "error": repr(e)})
        return set()
    return {
        f"[{info[4][0]}]:{port}" if info[0] == socket.AF_INET6 else f"{info[4][0]}:{port}"
        for info in infos
    }


class PolicyClient:
    """Balances calls over every daemon: each endpoint gets its own connections
    and streams. A name is re-resolved every `resolve_every` seconds and gets
    connections per address, so long-lived streams spread over all replicas
    behind it, and replicas that come or go are picked up or dropped (until a
    name first resolves, gRPC's own resolver serves it)."""

    def __init__(
        self,
        endpoints: list[str],
        streams_per_endpoint: int = 2,
        credentials: grpc.ChannelCredentials | None = None,
        server_name: str | None = None,
        resolve_every: float = 5.0,
    ) -> None:
        """`streams_per_endpoint` 0: unary calls only (and no skipping of unhandled events)."""
        self.endpoints = endpoints
        self._streams = streams_per_endpoint
        self._credentials, self._server_name = credentials, server_name
        # Endpoint as given -> target (itself, or an address of its name) -> connections.
        self._targets = {e: {e: self._connect(e, None)} for e in endpoints}
        self.connections = self._all()
        self._next = 0
        self._retired: list[Connection] = []
        self._tasks: set[asyncio.Task[None]] = set()
        names = [e for e in endpoints if is_name(e)]
        if names:
            loop = asyncio.get_running_loop()
            self._tasks.add(loop.create_task(self._keep_resolving(names, resolve_every)))

    def _connect(self, target: str, name: str | None) -> list[Connection]:
        server_name = self._server_name or name
        return [
            Connection(target, self._streams > 0, self._credentials, server_name)
            for _ in range(max(1, self._streams))
        ]

    def _all(self) -> list[Connection]:
        return [c for targets in self._targets.values() for cs in targets.values() for c in cs]

    async def _keep_resolving(self, names: list[str], every: float) -> None:
        while True:
            for endpoint in names:
                try:
                    addresses = await resolve(endpoint)
                    if addresses and addresses != self._targets[endpoint].keys():
                        await self._retarget(endpoint, addresses)
                except Exception:  # keep resolving: the next round may do better
                    log.exception("policy server resolution failed", extra={"server": endpoint})
            await asyncio.sleep(every)

    async def _retarget(self, endpoint: str, addresses: set[str]) -> None:
        targets = self._targets[endpoint]
        host = endpoint.rpartition(":")[0].strip("[]")
        for address in addresses - targets.keys():
            targets[address] = self._connect(address, host)
        stale = [targets.pop(t) for t in list(targets) if t not in addresses]
        self.connections = self._all()
        log.info(
            "policy server addresses", extra={"server": endpoint, "addresses": sorted(addresses)}
        )
        retired = [c for connections in stale for c in connections]
        self._retired.extend(retired)
        task = asyncio.get_running_loop().create_task(self._retire(retired))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retire(self, connections: list[Connection]) -> None:
        """Closes connections that new calls no longer use, once the calls in
        flight on them are over (closing a channel cancels its calls)."""
        await asyncio.sleep(RETIRE_AFTER)
        for connection in connections:
            self._retired.remove(connection)
            await connection.close()

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
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for connection in self.connections + self._retired:
            await connection.close()
