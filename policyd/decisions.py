"""The decision log: one JSON line per verdict, to follow any refusal back to its inputs.

Each line has the decision id (the edge logs the same id with the reply it sent),
the session and edge, the event, the inputs that matter (peer, sender,
recipient, message id; never message bodies or passwords), what was decided,
by which revision, and how long the evaluation took. Lines are buffered and
flushed at least every FLUSH_INTERVAL seconds, so logging costs little on the
hot path.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from typing import IO

from policy.addresses import join
from policy.events import EVENTS, Event
from policy.v1 import policy_pb2 as pb
from policy.verdicts import ACTION_NAMES, MODE_NAMES

# Events that log the EHLO domain themselves; the others log the session's.
_LOGS_EHLO = frozenset(e.name for e in EVENTS if any(key == "ehlo" for key, _ in e.logged))
FLUSH_INTERVAL = 0.1  # seconds a decision may wait in the buffer
_text = json.encoder.encode_basestring  # a JSON string, non-ASCII kept (C, fast)


class _Clock:
    """ISO 8601 UTC timestamps with microseconds; the part up to the second is
    formatted once per second (this runs for every decision)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._prefix}.{int((now - second) * 1e6):06d}+00:00"


def _inputs(request: pb.EvaluateRequest, event: Event) -> str:
    """What a reader needs to understand a decision, as the event table says;
    nothing secret or bulky (a bytes argument is recorded as its length)."""
    session = request.session
    out = f', "peer": {_text(join(session.peer_ip, session.peer_port))}'
    if session.ehlo_domain and event.name not in _LOGS_EHLO:
        out += f', "ehlo": {_text(session.ehlo_domain)}'
    arguments = getattr(request, event.field)
    for key, field in event.logged:
        value = getattr(arguments, field)
        if isinstance(value, str):
            out += f', "{key}": {_text(value)}'
        elif isinstance(value, bytes):
            out += f', "{key}": {len(value)}'
        else:
            out += f', "{key}": [{", ".join(_text(item) for item in value)}]'
    if session.HasField("auth"):
        out += f', "authn_id": {_text(session.auth.authn_id)}'
    return out


def entry(
    request: pb.EvaluateRequest,
    event: Event,
    verdict: pb.Verdict,
    seconds: float,
    identity: str | None,
    clock: _Clock,
) -> str:
    """One decision as a line of JSON (built directly: it is written for every verdict)."""
    ts = clock.now()
    line = (
        f'{{"ts": "{ts}", "decision_id": {_text(verdict.decision_id)}'
        f', "session_id": {_text(request.session.id)}'
        f', "edge_id": {_text(request.client.edge_id)}'
    )
    if identity is not None:
        line += f', "edge_cert": {_text(identity)}'
    line += f', "event": {_text(request.event)}{_inputs(request, event)}'
    line += f', "action": "{ACTION_NAMES.get(verdict.action, "unknown")}"'
    line += f', "revision": {_text(verdict.revision)}, "eval_ms": {round(seconds * 1000, 3)}'
    if verdict.action in (pb.ACTION_REJECT, pb.ACTION_DISCONNECT):
        mode = MODE_NAMES.get(verdict.mode)
        line += f', "code": {verdict.code}, "text": {_text(verdict.text)}'
        line += f', "mode": {_text(mode) if mode else "null"}'
    if verdict.error:
        line += f', "error": {_text(verdict.error)}'
    if verdict.dry_run:
        line += ', "dry_run": true'  # the client was told to continue
    return line + "}\n"


class DecisionLog:
    def __init__(self, target: str = "-") -> None:
        self._out: IO[str] = sys.stdout if target == "-" else open(target, "a", buffering=1 << 16)  # noqa: SIM115
        self._flush_pending = False
        self._clock = _Clock()

    def record(
        self,
        request: pb.EvaluateRequest,
        event: Event,
        verdict: pb.Verdict,
        seconds: float,
        identity: str | None = None,
    ) -> None:
        self._out.write(entry(request, event, verdict, seconds, identity, self._clock))
        if not self._flush_pending:
            self._flush_pending = True
            try:
                asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self.flush)
            except RuntimeError:  # no loop (a policy test run): flush now
                self.flush()

    def flush(self) -> None:
        self._flush_pending = False
        self._out.flush()

    def close(self) -> None:
        self.flush()
        if self._out is not sys.stdout:
            self._out.close()
