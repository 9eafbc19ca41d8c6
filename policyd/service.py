"""The gRPC face of the evaluator: a thin adapter, nothing more."""

from __future__ import annotations

import grpc

from policy.v1 import policy_pb2 as pb
from policy.v1 import policy_pb2_grpc as pb_grpc
from policyd.evaluate import Evaluator, RequestError


class PolicyService(pb_grpc.PolicyServiceServicer):
    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator

    async def Evaluate(
        self, request: pb.EvaluateRequest, context: grpc.aio.ServicerContext
    ) -> pb.Verdict:
        try:
            return self.evaluator.evaluate(request)
        except RequestError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            raise  # unreachable: abort raises
