"""One connection to one policy daemon: a channel, its unary stub, and (with
streams on) one long-lived `PolicyService/Stream` call kept up by itself.

Requests queued while a batch is being written go out together in the next
one; verdicts come back matched by request id. The stream's first message,
and every one after a reload, says which events the daemon's active revision
handles (`handled`), so the balancer can skip the rest. While the stream is
down (`up` is False), the unary stub still works.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging

import grpc

from policy.addresses import Address
from policy.v1 import POLICY_SERVICE
from policy.v1 import policy_pb2 as pb
from policy.v1 import policy_pb2_grpc as pb_grpc
from smtpedge.endpoints import channel_target

log = logging.getLogger("smtpedge.policy")

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


class PolicyConnection:
    """One channel to one endpoint: a unary stub and (`stream`) a long-lived stream."""

    def __init__(
        self,
        endpoint: Address,
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
        # The listeners of the revision last heard of (PolicyInfo.listeners).
        self.listeners: list[pb.Listener] = []
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
                    "policy stream lost",
                    extra={"server": str(self.endpoint), "status": e.code().name},
                )
            finally:
                self.handled = None
                writer.cancel()
                call.cancel()
                lost, self._pending = self._pending, {}
                self._outbox.clear()
                for future in lost.values():
                    if not future.done():
                        future.set_exception(StreamLost(str(self.endpoint)))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    def _policy_info(self, info: pb.PolicyInfo) -> None:
        message = "policy stream up" if self.handled is None else "policy revision changed"
        self.handled = frozenset(info.handled_events)
        self.listeners = list(info.listeners)
        log.info(
            message,
            extra={
                "server": str(self.endpoint),
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
