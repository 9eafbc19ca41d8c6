"""The edge's side of the policy contract: one verdict per SMTP event, within a deadline.

The balancer over every policy daemon. Each endpoint gets a few connections
(policy_stream.py), each with its own stream; a DNS name that resolves to
several addresses counts as one endpoint per address, re-resolved as replicas
come and go (endpoints.py). Calls go round-robin, connections with a stream up
first, and gRPC health checking keeps calls off daemons that are not SERVING.
A request whose stream breaks, or that an endpoint cannot take (UNAVAILABLE),
is tried on the next one, all within the one deadline. Streams and channels
reconnect by themselves, so the edge can start before any daemon and recovers
when one comes back.

A call that fails or runs out of time yields None, never a "continue": the
caller turns None into the fail-mode reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import grpc

from policy.addresses import Address, parse
from policy.listeners import for_port
from policy.v1 import policy_pb2 as pb
from smtpedge import endpoints
from smtpedge.policy_stream import PolicyConnection, Refused, StreamLost

log = logging.getLogger("smtpedge.policy")

# Seconds a connection to an address its name no longer resolves to is kept for
# the calls already on it (well beyond any stage deadline).
RETIRE_AFTER = 30.0


def _port(listener: pb.Listener) -> int:
    try:
        return parse(listener.listen).port
    except ValueError:  # the daemon checked it; an odd one matches no port
        return -1


class PolicyClient:
    """Balances calls over every daemon: each endpoint gets its own connections
    and streams. A name is re-resolved every `resolve_every` seconds and gets
    connections per address, so long-lived streams spread over all replicas
    behind it, and replicas that come or go are picked up or dropped (until a
    name first resolves, gRPC's own resolver serves it)."""

    def __init__(
        self,
        addresses: list[Address],
        streams_per_endpoint: int = 2,
        credentials: grpc.ChannelCredentials | None = None,
        server_name: str | None = None,
        resolve_every: float = 5.0,
    ) -> None:
        """`streams_per_endpoint` 0: unary calls only (and no skipping of unhandled events)."""
        self.endpoints = addresses
        self._streams = streams_per_endpoint
        self._credentials, self._server_name = credentials, server_name
        # Endpoint as given -> target (itself, or an address of its name) -> connections.
        self._targets = {a: {a: self._connect(a, None)} for a in addresses}
        self.connections = self._all()
        self._next = 0
        self._retired: list[PolicyConnection] = []
        self._tasks: set[asyncio.Task[None]] = set()
        names = [a for a in addresses if a.is_name]
        if names:
            loop = asyncio.get_running_loop()
            self._tasks.add(loop.create_task(self._keep_resolving(names, resolve_every)))

    def _connect(self, target: Address, name: str | None) -> list[PolicyConnection]:
        server_name = self._server_name or name
        return [
            PolicyConnection(target, self._streams > 0, self._credentials, server_name)
            for _ in range(max(1, self._streams))
        ]

    def _all(self) -> list[PolicyConnection]:
        return [c for targets in self._targets.values() for cs in targets.values() for c in cs]

    async def _keep_resolving(self, names: list[Address], every: float) -> None:
        while True:
            for endpoint in names:
                try:
                    addresses = await endpoints.resolve(endpoint)
                    if addresses and addresses != self._targets[endpoint].keys():
                        await self._retarget(endpoint, addresses)
                except Exception:  # keep resolving: the next round may do better
                    log.exception(
                        "policy server resolution failed", extra={"server": str(endpoint)}
                    )
            await asyncio.sleep(every)

    async def _retarget(self, endpoint: Address, addresses: set[Address]) -> None:
        targets = self._targets[endpoint]
        for address in addresses - targets.keys():
            targets[address] = self._connect(address, endpoint.host)
        stale = [targets.pop(t) for t in list(targets) if t not in addresses]
        self.connections = self._all()
        log.info(
            "policy server addresses",
            extra={"server": str(endpoint), "addresses": sorted(map(str, addresses))},
        )
        retired = [c for connections in stale for c in connections]
        self._retired.extend(retired)
        task = asyncio.get_running_loop().create_task(self._retire(retired))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retire(self, connections: list[PolicyConnection]) -> None:
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

    def listener(self, port: int) -> pb.Listener | None:
        """The policy's listener that shapes a session on `port` (policy/listeners.py),
        as the first daemon whose stream is up reports it; None when none does."""
        for connection in self.connections:
            if connection.handled is not None:
                return for_port(connection.listeners, port, _port)
        return None

    def _order(self) -> list[PolicyConnection]:
        """Connections to try, round-robin, those with a stream up first."""
        count = len(self.connections)
        start = self._next
        self._next = (start + 1) % count
        rotated = self.connections[start:] + self.connections[:start]
        return [c for c in rotated if c.up] + [c for c in rotated if not c.up]

    async def evaluate(self, request: pb.EvaluateRequest, timeout: float) -> pb.Verdict | None:
        deadline = time.monotonic() + timeout
        problem = "DEADLINE_EXCEEDED"
        for connection in self._order():
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
