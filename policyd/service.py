"""The gRPC face of the daemon: thin adapters over the evaluator and the store."""

from __future__ import annotations

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from policy.v1 import policy_pb2 as pb
from policy.v1 import policy_pb2_grpc as pb_grpc
from policyd.evaluate import RequestError
from policyd.store import Outcome, RevisionStore

_OUTCOMES = {
    Outcome.ACTIVATED: pb.ReloadResponse.OUTCOME_ACTIVATED,
    Outcome.UNCHANGED: pb.ReloadResponse.OUTCOME_UNCHANGED,
    Outcome.FAILED: pb.ReloadResponse.OUTCOME_FAILED,
}


def _timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


class PolicyService(pb_grpc.PolicyServiceServicer):
    def __init__(self, store: RevisionStore) -> None:
        self.store = store

    async def Evaluate(
        self, request: pb.EvaluateRequest, context: grpc.aio.ServicerContext
    ) -> pb.Verdict:
        revision = self.store.active
        assert revision is not None  # the daemon does not serve before its first revision
        try:
            return await revision.evaluator.evaluate(request)
        except RequestError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            raise  # unreachable: abort raises


class AdminService(pb_grpc.PolicyAdminServicer):
    def __init__(self, store: RevisionStore) -> None:
        self.store = store

    async def Status(
        self, request: pb.StatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.StatusResponse:
        store = self.store
        response = pb.StatusResponse(
            activations=store.activations, failures=store.failures, source=str(store.source)
        )
        if (active := store.active) is not None:
            response.active.CopyFrom(
                pb.Revision(
                    id=active.id,
                    activated_at=_timestamp(active.activated_at),
                    trigger=active.trigger,
                    files=active.files,
                    handlers=active.handlers,
                    test_files=active.test_files,
                    test_cases=active.test_cases,
                )
            )
        if (failure := store.last_failure) is not None:
            response.last_failure.CopyFrom(
                pb.ReloadFailure(
                    at=_timestamp(failure.at), trigger=failure.trigger, error=failure.error
                )
            )
        return response

    async def Reload(
        self, request: pb.ReloadRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReloadResponse:
        outcome, detail = await self.store.reload("rpc")
        response = pb.ReloadResponse(outcome=_OUTCOMES[outcome])
        if outcome is Outcome.FAILED:
            response.error = detail
        response.revision = self.store.active.id if self.store.active else ""
        return response
