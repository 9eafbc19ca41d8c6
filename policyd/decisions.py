"""The decision log: one JSON line per verdict, to follow any refusal back to its inputs.

Each line has the decision id (the edge logs the same id with the reply it sent),
the session and edge, the event, the inputs that matter (peer, sender,
recipient, message id; never message bodies or passwords), what was decided,
by which revision, and how long the evaluation took. Lines are buffered and
flushed at least every `flush_interval` seconds, so logging costs little on the
hot path.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import IO, Any

from policy.v1 import policy_pb2 as pb

ACTION_NAMES = {
    pb.ACTION_CONTINUE: "continue",
    pb.ACTION_REJECT: "reject",
    pb.ACTION_DISCONNECT: "disconnect",
    pb.ACTION_ERROR: "error",
}
MODE_NAMES = {
    pb.DISCONNECT_MODE_IF_421: "If421",
    pb.DISCONNECT_MODE_FOLLOW_WITH_421: "FollowWith421",
    pb.DISCONNECT_MODE_FORCE_DISCONNECT: "ForceDisconnect",
}


def inputs(request: pb.EvaluateRequest) -> dict[str, Any]:
    """What a reader needs to understand a decision; nothing secret or bulky."""
    session = request.session
    out: dict[str, Any] = {"peer": f"{session.peer_ip}:{session.peer_port}"}
    if session.ehlo_domain:
        out["ehlo"] = session.ehlo_domain
    kind = request.WhichOneof("args")
    if kind == "ehlo":
        out["ehlo"] = request.ehlo.domain
    elif kind == "mail_from":
        out["sender"] = request.mail_from.sender
    elif kind == "rcpt_to":
        out["recipient"] = request.rcpt_to.recipient
    elif kind == "message":
        message = request.message
        out.update(
            message_id=message.message_id,
            sender=message.sender,
            recipients=list(message.recipients),
            bytes=len(message.data),
        )
    elif kind == "auth_plain":
        out["authc"] = request.auth_plain.authc  # never the password
    if session.HasField("auth"):
        out["authn_id"] = session.auth.authn_id
    return out


def entry(
    request: pb.EvaluateRequest, verdict: pb.Verdict, seconds: float, identity: str | None = None
) -> dict[str, Any]:
    line: dict[str, Any] = {
        "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
        "decision_id": verdict.decision_id,
        "session_id": request.session.id,
        "edge_id": request.client.edge_id,
        **({"edge_cert": identity} if identity is not None else {}),
        "event": request.event,
        **inputs(request),
        "action": ACTION_NAMES.get(verdict.action, "unknown"),
        "revision": verdict.revision,
        "eval_ms": round(seconds * 1000, 3),
    }
    if verdict.action in (pb.ACTION_REJECT, pb.ACTION_DISCONNECT):
        line.update(code=verdict.code, text=verdict.text, mode=MODE_NAMES.get(verdict.mode))
    if verdict.error:
        line["error"] = verdict.error
    if verdict.dry_run:
        line["dry_run"] = True  # the client was told to continue
    return line


class DecisionLog:
    def __init__(self, target: str = "-", flush_interval: float = 0.1) -> None:
        self.target = target
        self._out: IO[str] = sys.stdout if target == "-" else open(target, "a", buffering=1 << 16)  # noqa: SIM115
        self._flush_interval = flush_interval
        self._flush_pending = False

    def record(
        self,
        request: pb.EvaluateRequest,
        verdict: pb.Verdict,
        seconds: float,
        identity: str | None = None,
    ) -> None:
        line = entry(request, verdict, seconds, identity)
        self._out.write(json.dumps(line, ensure_ascii=False) + "\n")
        if not self._flush_pending:
            self._flush_pending = True
            try:
                asyncio.get_running_loop().call_later(self._flush_interval, self.flush)
            except RuntimeError:  # no loop (a policy test run): flush now
                self.flush()

    def flush(self) -> None:
        self._flush_pending = False
        self._out.flush()

    def close(self) -> None:
        self.flush()
        if self._out is not sys.stdout:
            self._out.close()
