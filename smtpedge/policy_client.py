"""The edge's side of the policy contract: one call per SMTP event, with a deadline.

A call that fails or runs out of time yields None, never a "continue": the
caller turns None into the fail-mode reply.
"""

from __future__ import annotations

import logging

import grpc

from policy.v1 import policy_pb2 as pb
from policy.v1 import policy_pb2_grpc as pb_grpc

log = logging.getLogger("smtpedge.policy")


class PolicyClient:
    def __init__(self, target: str, timeout: float) -> None:
        self.target = target
        self.timeout = timeout
        self._channel = grpc.aio.insecure_channel(target)
        self._stub = pb_grpc.PolicyServiceStub(self._channel)

    async def evaluate(self, request: pb.EvaluateRequest) -> pb.Verdict | None:
        try:
            return await self._stub.Evaluate(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as e:
            log.warning(
                "no verdict",
                extra={
                    "session_id": request.session.id,
                    "event": request.event,
                    "status": e.code().name,
                    "details": e.details(),
                    "server": self.target,
                },
            )
            return None

    async def close(self) -> None:
        await self._channel.close()
