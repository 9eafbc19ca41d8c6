"""From an EvaluateRequest to a Verdict: check it, run the handler, report.

The daemon keeps no session state: the predefined conn_meta keys are derived
from the request's client and session facts, and everything the policy set
earlier in the session arrives in request.conn_meta.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from policy.v1 import policy_pb2 as pb
from policyd import metrics
from policyd.bridge import Bridge
from policyd.decisions import ACTION_NAMES, MODE_NAMES, DecisionLog, host_port
from policyd.hostcalls import BridgeError, deadline
from policyd.overflow import Overflow, OverflowLane
from policyd.runtime import LuaPolicy, Outcome, Pending
from policyd.source import Snapshot

log = logging.getLogger("policyd.evaluate")

# Which `args` field each event carries.
EVENT_ARGS = {
    "smtp_server_connection_accepted": "connect",
    "smtp_server_ehlo": "ehlo",
    "smtp_server_auth_plain": "auth_plain",
    "smtp_server_mail_from": "mail_from",
    "smtp_server_rcpt_to": "rcpt_to",
    "smtp_server_data": "message",
    "smtp_server_message_received": "message",
}

# The policy's words for actions and modes, to the contract's values.
_ACTIONS = {name: action for action, name in ACTION_NAMES.items()}
_MODES = {"": pb.DISCONNECT_MODE_UNSPECIFIED} | {name: mode for mode, name in MODE_NAMES.items()}
_HEADER_OPS = {
    "prepend": pb.HeaderChange.OP_PREPEND,
    "append": pb.HeaderChange.OP_APPEND,
    "remove": pb.HeaderChange.OP_REMOVE,
}


_ids = random.Random(os.urandom(16))


def decision_id() -> str:
    """A random 64-bit id (unique, not secret; no syscall on the hot path)."""
    return f"{_ids.getrandbits(64):016x}"


class RequestError(ValueError):
    """A request the daemon cannot make sense of."""


def check_request(request: pb.EvaluateRequest, max_message_size: int) -> None:
    expected = EVENT_ARGS.get(request.event)
    if expected is None:
        raise RequestError(f"unknown event {request.event!r}; expected one of {sorted(EVENT_ARGS)}")
    if request.WhichOneof("args") != expected:
        raise RequestError(f"event {request.event} needs args.{expected}")
    if expected == "ehlo" and not request.ehlo.domain:
        raise RequestError("args.ehlo.domain is empty")
    if expected == "rcpt_to" and not request.rcpt_to.recipient:
        raise RequestError("args.rcpt_to.recipient is empty")
    if expected == "message" and len(request.message.data) > max_message_size:
        raise RequestError(
            f"args.message.data is {len(request.message.data)} bytes, "
            f"more than this daemon's limit of {max_message_size}"
        )


# Keys only the daemon may state: they come from what it verified itself.
VERIFIED_KEYS = ("edge_cert_subject",)


def session_meta(request: pb.EvaluateRequest) -> dict[str, str] | None:
    """The metadata the policy set earlier in the session, as the edge sent it back
    (less anything claiming what only the daemon can verify)."""
    meta = dict(request.conn_meta)
    for key in VERIFIED_KEYS:
        meta.pop(key, None)
    return meta or None


def predefined_meta(request: pb.EvaluateRequest, identity: str | None = None) -> dict[str, str]:
    """The conn_meta keys every session has, from the request's facts (and the
    edge's verified certificate name, when it called over mutual TLS)."""
    client, session = request.client, request.session
    meta = dict(client.labels)
    if identity is not None:
        meta["edge_cert_subject"] = identity
    meta["reception_protocol"] = "ESMTP"
    meta["received_from"] = host_port(session.peer_ip, session.peer_port)
    meta["received_via"] = host_port(session.local_ip, session.local_port)
    meta["hostname"] = client.hostname
    if client.edge_id:
        meta["edge_id"] = client.edge_id
    if session.ehlo_domain:
        meta["ehlo_domain"] = session.ehlo_domain
    if session.HasField("tls"):
        meta["tls_protocol_version"] = session.tls.protocol_version
        meta["tls_cipher"] = session.tls.cipher
        if session.tls.peer_subject_name:
            meta["tls_peer_subject_name"] = session.tls.peer_subject_name
    if session.HasField("auth"):
        meta["authn_id"] = session.auth.authn_id
        meta["authz_id"] = session.auth.authz_id
    return meta


def event_args(request: pb.EvaluateRequest) -> dict[str, Any]:
    kind = EVENT_ARGS[request.event]  # check_request made sure it is the one set
    if kind == "mail_from":
        return {"sender": request.mail_from.sender}
    if kind == "rcpt_to":
        return {"recipient": request.rcpt_to.recipient}
    if kind == "ehlo":
        e = request.ehlo
        return {"domain": e.domain, "helo": e.helo, "extensions": list(e.extensions)}
    if kind == "auth_plain":
        a = request.auth_plain
        return {"authz": a.authz, "authc": a.authc, "password": a.password}
    if kind == "message":
        m = request.message
        args: dict[str, Any] = {
            "message_id": m.message_id,
            "sender": m.sender,
            "recipients": list(m.recipients),
            "data": m.data,
        }
        if m.msg_meta:
            args["msg_meta"] = dict(m.msg_meta)
        return args
    return {}


def _continue_instead(verdict: pb.Verdict) -> pb.Verdict:
    """A dry run's answer: continue, keeping only the session's metadata changes
    (later events evaluate as they would have), not headers or extensions."""
    return pb.Verdict(
        request_id=verdict.request_id,
        action=pb.ACTION_CONTINUE,
        meta_set=verdict.meta_set,
        revision=verdict.revision,
        decision_id=verdict.decision_id,
        dry_run=True,
    )


class InlineLane:
    """Runs an evaluation's steps right here, on the event loop's thread."""

    def __init__(self, policy: LuaPolicy) -> None:
        self.policy = policy

    async def run(self, fn: Callable[[LuaPolicy], Any]) -> Any:
        return fn(self.policy)


def _resume(policy: LuaPolicy, pending: Pending, ok: bool, values: tuple[Any, ...]) -> Any:
    return policy.resume(pending, ok, values)


async def drive(
    lane: InlineLane | OverflowLane,
    bridge: Bridge,
    event: str,
    inputs: tuple[dict[str, Any], dict[str, str] | None, dict[str, Any]],
    seconds: float,
    slice: int | None,
) -> Outcome:
    """Runs one evaluation to its end, awaiting the host calls it makes."""
    ends = time.monotonic() + seconds
    step = await lane.run(lambda p: p.start(event, *inputs, seconds, slice))
    while isinstance(step, Pending):
        pending = step
        try:
            async with asyncio.timeout(ends - time.monotonic()):
                with deadline(ends):
                    values = await bridge.call(pending.name, pending.args)
            ok = True
        except TimeoutError:
            return Outcome(
                "error",
                error=f"{pending.where}: evaluation ran out of time in kumo.{pending.name}",
                exceeded="time",
            )
        except BridgeError as e:
            ok, values = False, (str(e),)
        step = await lane.run(partial(_resume, pending=pending, ok=ok, values=values))
    return step


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
        """The verdict for one request.

        The caller's deadline does not shorten the evaluation: a caller that
        gives up cancels the call, and its own fail mode decides, not a
        policy error made up at the deadline.
        """
        try:
            check_request(request, self.max_message_size)
        except RequestError:
            metrics.INVALID_REQUESTS.inc()
            raise
        policy = self.policy
        verdict = pb.Verdict(
            request_id=request.request_id,
            revision=policy.revision,
            decision_id=decision_id(),
            action=pb.ACTION_CONTINUE,
        )
        if request.event not in self.handled:
            metrics.evaluations(request.event, "continue").inc()
            if self.decisions is not None:
                self.decisions.record(request, verdict, 0.0, identity)
            return verdict
        inputs = (
            predefined_meta(request, identity),
            session_meta(request),
            event_args(request),
        )
        limit = self.limits.seconds
        began = time.monotonic()
        outcome = await drive(self._inline, self.bridge, request.event, inputs, limit, self._slice)
        if outcome.exceeded == policy.slice_marker:
            assert self._overflow is not None  # only a slice sets the marker
            lane = self._overflow.lane(policy.revision, self._snapshot, self.limits)
            left = limit - (time.monotonic() - began)
            outcome = await drive(lane, self.bridge, request.event, inputs, left, None)
        seconds = time.monotonic() - began
        metrics.evaluation_seconds(request.event).observe(seconds)
        metrics.evaluations(request.event, outcome.action).inc()
        self._verdict(request, verdict, outcome)
        dry_run = (self.dry_run or request.dry_run) and request.event != "smtp_server_auth_plain"
        if dry_run:
            verdict.dry_run = True
        if self.decisions is not None:
            self.decisions.record(request, verdict, seconds, identity)
        return _continue_instead(verdict) if dry_run else verdict

    def _verdict(self, request: pb.EvaluateRequest, verdict: pb.Verdict, outcome: Outcome) -> None:
        verdict.action = _ACTIONS[outcome.action]
        if outcome.action == "error":
            metrics.POLICY_ERRORS.labels("limit" if outcome.exceeded else "error").inc()
            verdict.error = outcome.error.splitlines()[0]
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
            return
        verdict.code = outcome.code
        verdict.text = outcome.text
        verdict.mode = _MODES[outcome.mode]
        verdict.auth_granted = outcome.auth
        if outcome.meta:
            verdict.meta_set.update(outcome.meta)
        if outcome.msg_meta:
            verdict.msg_meta_set.update(outcome.msg_meta)
        if outcome.headers:
            verdict.header_changes.extend(
                pb.HeaderChange(op=_HEADER_OPS[op], name=name, value=value)
                for op, name, value in outcome.headers
            )
        if outcome.extensions is not None:
            verdict.ehlo_extensions.items.extend(outcome.extensions)
