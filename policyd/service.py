"""The gRPC face of the daemon: thin adapters over the evaluator and the store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from policy.v1 import policy_pb2 as pb
from policy.v1 import policy_pb2_grpc as pb_grpc
from policyd.access import AdminAccess, peer_identity
from policyd.requests import RequestError
from policyd.store import Outcome, Revision, RevisionStore

log = logging.getLogger("policyd.service")

_OUTCOMES = {
    Outcome.ACTIVATED: pb.ReloadResponse.OUTCOME_ACTIVATED,
    Outcome.UNCHANGED: pb.ReloadResponse.OUTCOME_UNCHANGED,
    Outcome.FAILED: pb.ReloadResponse.OUTCOME_FAILED,
}


def _timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def policy_info(revision: Revision) -> pb.PolicyInfo:
    return pb.PolicyInfo(
        revision=revision.id, handled_events=revision.handlers, listeners=revision.listeners
    )


def _mismatch(request: pb.EvaluateRequest, identity: str) -> str:
    return (
        f"edge id {request.client.edge_id!r} does not match the client certificate (CN={identity})"
    )


class _Denied:
    def __init__(self, message: str) -> None:
        self.message = message


class NoPolicy(Exception):
    message = "no policy revision is active"


_END = object()  # a stream's caller is done and every answer is out
_CLOSE = object()  # the daemon is stopping: answer what was asked, then end
Outgoing = pb.Verdict | pb.PolicyInfo | pb.RequestError


class PolicyService(pb_grpc.PolicyServiceServicer):
    def __init__(self, store: RevisionStore) -> None:
        self.store = store
        self._streams: set[asyncio.Queue] = set()
        self._closing = False

    def close_streams(self) -> None:
        """On shutdown: each stream answers what it was sent, then ends; no new ones."""
        self._closing = True
        for out in self._streams:
            out.put_nowait(_CLOSE)

    def _revision(self) -> Revision:
        revision = self.store.active
        if revision is None:  # --wait-for-policy, before a good revision loads
            raise NoPolicy
        return revision

    async def Evaluate(
        self, request: pb.EvaluateRequest, context: grpc.aio.ServicerContext
    ) -> pb.Verdict:
        identity = peer_identity(context)
        if identity is not None and request.client.edge_id != identity:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, _mismatch(request, identity))
        try:
            return await self._revision().evaluator.evaluate(request, identity)
        except RequestError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except NoPolicy:
            await context.abort(grpc.StatusCode.UNAVAILABLE, NoPolicy.message)
        raise AssertionError("unreachable: abort raises")

    async def Stream(
        self, requests: AsyncIterator[pb.RequestBatch], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ReplyBatch]:
        """Evaluates each request as it comes; sends what is ready, in batches."""
        out: asyncio.Queue[Outgoing | object] = asyncio.Queue()
        evaluations: set[asyncio.Task] = set()

        async def answer(pending: Coroutine[Any, Any, pb.Verdict]) -> None:
            out.put_nowait(await pending)

        async def read() -> None:
            async for batch in requests:
                for request in batch.requests:
                    if identity is not None and request.client.edge_id != identity:
                        out.put_nowait(_Denied(_mismatch(request, identity)))
                        return
                    try:
                        verdict = self._revision().evaluator.begin(request, identity)
                    except RequestError as e:
                        out.put_nowait(
                            pb.RequestError(request_id=request.request_id, message=str(e))
                        )
                        continue
                    if isinstance(verdict, pb.Verdict):  # most: made without waiting
                        out.put_nowait(verdict)
                        continue
                    task = asyncio.create_task(answer(verdict))
                    evaluations.add(task)
                    task.add_done_callback(evaluations.discard)
            while evaluations:  # the caller is done sending: finish what it sent
                await asyncio.wait(set(evaluations))
            out.put_nowait(_END)

        def activated(revision: Revision) -> None:
            out.put_nowait(policy_info(revision))

        identity = peer_identity(context)
        if identity is not None:
            log.info("edge connected", extra={"identity": identity, "peer": context.peer()})
        if self._closing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the daemon is shutting down")
        if self.store.active is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, NoPolicy.message)
        self.store.listeners.add(activated)
        self._streams.add(out)
        reader = asyncio.create_task(read())
        try:
            yield pb.ReplyBatch(policy=policy_info(self._revision()))
            while True:
                items = [await out.get()]
                await asyncio.sleep(0)  # let evaluations that are ready finish: bigger batches
                while not out.empty():
                    items.append(out.get_nowait())
                if _CLOSE in items:
                    reader.cancel()
                    if evaluations:
                        await asyncio.wait(set(evaluations))
                    while not out.empty():
                        items.append(out.get_nowait())
                    items.append(_END)
                reply = pb.ReplyBatch()
                for item in items:
                    if isinstance(item, _Denied):
                        await context.abort(grpc.StatusCode.PERMISSION_DENIED, item.message)
                    if isinstance(item, pb.Verdict):
                        reply.verdicts.append(item)
                    elif isinstance(item, pb.PolicyInfo):
                        reply.policy.CopyFrom(item)
                    elif isinstance(item, pb.RequestError):
                        reply.errors.append(item)
                if reply.verdicts or reply.errors or reply.HasField("policy"):
                    yield reply
                if items[-1] is _END:
                    return
        finally:
            self.store.listeners.discard(activated)
            self._streams.discard(out)
            reader.cancel()
            for task in list(evaluations):
                task.cancel()


class AdminService(pb_grpc.PolicyAdminServicer):
    def __init__(
        self,
        store: RevisionStore,
        access: AdminAccess,
        relay: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.access = access
        self._relay = relay  # tells sibling worker processes to reload too

    async def _authorize(self, context: grpc.aio.ServicerContext) -> None:
        if not self.access.allows(context):
            log.warning("admin call refused", extra={"peer": context.peer()})
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                "admin calls need the admin token or an admin client certificate",
            )

    async def Status(
        self, request: pb.StatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.StatusResponse:
        await self._authorize(context)
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
        await self._authorize(context)
        outcome, detail = await self.store.reload("rpc")
        if self._relay is not None:
            self._relay()
        response = pb.ReloadResponse(outcome=_OUTCOMES[outcome])
        if outcome is Outcome.FAILED:
            response.error = detail
        response.revision = self.store.active.id if self.store.active else ""
        return response
