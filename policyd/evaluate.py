"""From an EvaluateRequest to a Verdict, against one loaded policy revision.

In order: the request is checked (`requests`), an event without a handler is
answered at once, the handler's inputs are made from the request alone
(`inputs`), the evaluation runs inline and, if it outgrows its slice, again on
an overflow worker (`drive`), and its outcome becomes the verdict
(`assemble`), which is logged (`decisions`) and, in dry run, replaced by a
"continue". An evaluation that makes no host call and stays within its slice,
the usual case, is made right away, with no coroutine of its own (`begin`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Coroutine
from typing import Any

from policy.events import Event
from policy.ids import new_id
from policy.v1 import policy_pb2 as pb
from policyd import metrics
from policyd.assemble import continue_instead, fill
from policyd.bridge import Bridge
from policyd.decisions import DecisionLog
from policyd.drive import InlineLane, drive, follow
from policyd.inputs import Inputs, handler_inputs
from policyd.overflow import Overflow
from policyd.requests import RequestError, check_request
from policyd.runtime import LuaPolicy, Outcome, Pending
from policyd.source import Snapshot

log = logging.getLogger("policyd.evaluate")


class Evaluator:
    """Evaluates requests against one loaded policy revision.

    Inline first, under the slice; an evaluation that outgrows it (and has
    done nothing that cannot be done twice) runs again from the start on an
    overflow runtime, within what is left of its time.
    """

    def __init__(
        self,
        policy: LuaPolicy,
        bridge: Bridge,
        overflow: Overflow | None = None,
        max_message_size: int = 32 * 1024 * 1024,
        decisions: DecisionLog | None = None,
        dry_run: bool = False,
    ) -> None:
        self.policy = policy
        self.decisions = decisions
        self.dry_run = dry_run
        self.max_message_size = max_message_size
        self.limits = policy.limits
        self.bridge = bridge
        self.handled = frozenset(policy.handled_events)
        self._inline = InlineLane(policy)
        self._overflow = overflow
        # What an overflow runtime loads: the very bytes this policy was loaded from.
        source = policy.source
        self._snapshot = source if isinstance(source, Snapshot) else Snapshot(source, policy.files)
        # Without overflow runtimes, an evaluation runs inline to its end.
        self._slice = policy.limits.slice if overflow is not None else None

    async def evaluate(
        self, request: pb.EvaluateRequest, identity: str | None = None
    ) -> pb.Verdict:
        """The verdict for one request (RequestError for one it cannot make sense of).

        The caller's deadline does not shorten the evaluation: a caller that
        gives up cancels the call, and its own fail mode decides, not a
        policy error made up at the deadline.
        """
        verdict = self.begin(request, identity)
        return verdict if isinstance(verdict, pb.Verdict) else await verdict

    def begin(
        self, request: pb.EvaluateRequest, identity: str | None = None
    ) -> pb.Verdict | Coroutine[Any, Any, pb.Verdict]:
        """The verdict, when it is made without waiting (no host call, within the
        slice: most are); otherwise a coroutine that makes it. So a stream needs
        no task for most requests."""
        try:
            event = check_request(request, self.max_message_size)
        except RequestError:
            metrics.INVALID_REQUESTS.inc()
            raise
        verdict = pb.Verdict(
            request_id=request.request_id,
            revision=self.policy.revision,
            decision_id=new_id(),
            action=pb.ACTION_CONTINUE,
        )
        if event.name not in self.handled:
            metrics.evaluations(event.name, "continue").inc()
            if self.decisions is not None:
                inputs = handler_inputs(request, event, identity)
                self.decisions.record(request, event, inputs, verdict, 0.0, identity)
            return verdict
        inputs = handler_inputs(request, event, identity)
        began = time.monotonic()
        step = self.policy.start(event.name, *inputs, self.limits.seconds, self._slice)
        if isinstance(step, Outcome) and step.exceeded != self.policy.slice_marker:
            seconds = time.monotonic() - began
            return self._conclude(request, event, inputs, verdict, step, seconds, identity)
        return self._complete(request, event, inputs, verdict, step, began, identity)

    async def _complete(
        self,
        request: pb.EvaluateRequest,
        event: Event,
        inputs: Inputs,
        verdict: pb.Verdict,
        step: Outcome | Pending,
        began: float,
        identity: str | None,
    ) -> pb.Verdict:
        """An evaluation that waits for host calls, or moves to an overflow lane."""
        limit = self.limits.seconds
        outcome = await follow(self._inline, self.bridge, step, began + limit)
        if outcome.exceeded == self.policy.slice_marker:
            assert self._overflow is not None  # only a slice sets the marker
            lane = self._overflow.lane(self.policy.revision, self._snapshot, self.limits)
            left = limit - (time.monotonic() - began)
            outcome = await drive(lane, self.bridge, event.name, inputs, left, None)
        seconds = time.monotonic() - began
        return self._conclude(request, event, inputs, verdict, outcome, seconds, identity)

    def _conclude(
        self,
        request: pb.EvaluateRequest,
        event: Event,
        inputs: Inputs,
        verdict: pb.Verdict,
        outcome: Outcome,
        seconds: float,
        identity: str | None,
    ) -> pb.Verdict:
        """The outcome as the verdict: counted, logged, and in dry run a continue."""
        metrics.evaluation_seconds(event.name).observe(seconds)
        metrics.evaluations(event.name, outcome.action).inc()
        fill(verdict, outcome)
        if outcome.action == "error":
            self._report_error(request, verdict, outcome)
        dry_run = (self.dry_run or request.dry_run) and event.dry_run
        if dry_run:
            verdict.dry_run = True
        if self.decisions is not None:
            self.decisions.record(request, event, inputs, verdict, seconds, identity)
        return continue_instead(verdict) if dry_run else verdict

    def _report_error(
        self, request: pb.EvaluateRequest, verdict: pb.Verdict, outcome: Outcome
    ) -> None:
        metrics.POLICY_ERRORS.labels("limit" if outcome.exceeded else "error").inc()
        log.warning(
            "policy error",
            extra={
                "event": request.event,
                "session_id": request.session.id,
                "decision_id": verdict.decision_id,
                "revision": verdict.revision,
                "limit": outcome.exceeded,
                "error": outcome.error,
            },
        )
