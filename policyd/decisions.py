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
from collections.abc import Mapping
from typing import IO, Any

from policy.events import EVENTS, Event
from policy.logs import Timestamps
from policy.v1 import policy_pb2 as pb
from policy.verdicts import ACTION_NAMES, MODE_NAMES
from policyd.inputs import Inputs

# Events that log the EHLO domain themselves; the others log the session's.
_LOGS_EHLO = frozenset(e.name for e in EVENTS if any(key == "ehlo" for key, _ in e.logged))
FLUSH_INTERVAL = 0.1  # seconds a decision may wait in the buffer
_text = json.encoder.encode_basestring  # a JSON string, non-ASCII kept (C, fast)


def _inputs(fixed: Mapping[str, Any], args: Mapping[str, Any], event: Event) -> str:
    """What a reader needs to understand a decision, as the event table says;
    nothing secret or bulky (a bytes argument is recorded as its length, a
    number as it is). Read
    from the handler's inputs, which the evaluation has built already."""
    out = f', "peer": {_text(fixed["received_from"])}'
    ehlo = fixed.get("ehlo_domain")
    if ehlo and event.name not in _LOGS_EHLO:
        out += f', "ehlo": {_text(ehlo)}'
    for key, field in event.logged:
        value = args.get(field, ())
        if isinstance(value, str):
            out += f', "{key}": {_text(value)}'
        elif isinstance(value, bytes):
            out += f', "{key}": {len(value)}'
        elif isinstance(value, int):
            out += f', "{key}": {value}'
        else:
            out += f', "{key}": [{", ".join(_text(item) for item in value)}]'
    authn_id = fixed.get("authn_id")
    if authn_id is not None:
        out += f', "authn_id": {_text(authn_id)}'
    return out


_ACTIONS = {number: f'"{name}"' for number, name in ACTION_NAMES.items()}
_UNKNOWN = '"unknown"'
_REFUSALS = (pb.ACTION_REJECT, pb.ACTION_DISCONNECT)


def entry(
    request: pb.EvaluateRequest,
    event: Event,
    inputs: Inputs,
    verdict: pb.Verdict,
    seconds: float,
    identity: str | None,
    timestamps: Timestamps,
) -> str:
    """One decision as a line of JSON (built directly: it is written for every verdict)."""
    fixed, _, args, _ = inputs
    cert = "" if identity is None else f', "edge_cert": {_text(identity)}'
    line = (
        f'{{"ts": "{timestamps.iso(time.time())}", "decision_id": "{verdict.decision_id}"'
        f', "session_id": {_text(request.session.id)}'
        f', "edge_id": {_text(request.client.edge_id)}{cert}'
        f', "event": "{event.name}"{_inputs(fixed, args, event)}'
        f', "action": {_ACTIONS.get(verdict.action, _UNKNOWN)}'
        f', "revision": "{verdict.revision}", "eval_ms": {seconds * 1000:.3f}'
    )
    if verdict.action in _REFUSALS:
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
        self._timestamps = Timestamps()

    def record(
        self,
        request: pb.EvaluateRequest,
        event: Event,
        inputs: Inputs,
        verdict: pb.Verdict,
        seconds: float,
        identity: str | None = None,
    ) -> None:
        self._out.write(entry(request, event, inputs, verdict, seconds, identity, self._timestamps))
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
