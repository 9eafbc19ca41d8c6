"""The edge's side of the policy contract: one call per SMTP event, with a deadline.

Several daemon endpoints may be given; each is a gRPC channel (a DNS name that
resolves to several addresses is balanced round-robin within its channel, and
gRPC health checking keeps calls off daemons that are not SERVING). Calls go
round-robin across endpoints; a call an endpoint cannot take (UNAVAILABLE) is
tried on the next one, all within the one deadline. Channels reconnect by
themselves, so the edge can start before any daemon and recovers when one
comes back.

A call that fails or runs out of time yields None, never a "continue": the
caller turns None into the fail-mode reply.
"""

from __future__ import annotations

import ipaddress
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
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 10000),
    ("grpc.keepalive_timeout_ms", 5000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_send_message_length", -1),
]


def channel_target(endpoint: str) -> str:
    """A gRPC target for HOST:PORT: IP literals as such, names through DNS (all addresses)."""
    host, _, port = endpoint.rpartition(":")
    host = host.strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return f"dns:///{host}:{port}"
    return f"ipv6:[{ip}]:{port}" if ip.version == 6 else f"ipv4:{ip}:{port}"


class PolicyClient:
    def __init__(self, endpoints: list[str]) -> None:
        self.endpoints = endpoints
        self._channels = [
            grpc.aio.insecure_channel(channel_target(endpoint), options=_CHANNEL_OPTIONS)
            for endpoint in endpoints
        ]
        self._stubs = [pb_grpc.PolicyServiceStub(c) for c in self._channels]
        self._next = 0
        for channel in self._channels:
            channel.get_state(try_to_connect=True)

    async def evaluate(self, request: pb.EvaluateRequest, timeout: float) -> pb.Verdict | None:
        deadline = time.monotonic() + timeout
        count = len(self._stubs)
        first = self._next
        self._next = (first + 1) % count
        attempts = max(3, count)
        error: grpc.aio.AioRpcError | None = None
        for attempt in range(attempts):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            stub = self._stubs[(first + attempt) % count]
            try:
                return await stub.Evaluate(request, timeout=remaining)
            except grpc.aio.AioRpcError as e:
                error = e
                if e.code() != grpc.StatusCode.UNAVAILABLE:
                    break
        log.warning(
            "no verdict",
            extra={
                "session_id": request.session.id,
                "event": request.event,
                "status": error.code().name if error else "DEADLINE_EXCEEDED",
                "details": error.details() if error else "",
            },
        )
        return None

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
