"""From an EvaluateRequest to a Verdict: check it, run the handler, report.

The daemon keeps no session state: the predefined conn_meta keys are derived
from the request's client and session facts, and everything the policy set
earlier in the session arrives in request.conn_meta.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from lupa import lua54

from policy.v1 import policy_pb2 as pb
from policyd.runtime import LuaPolicy

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

_ACTIONS = {
    "continue": pb.ACTION_CONTINUE,
    "reject": pb.ACTION_REJECT,
    "disconnect": pb.ACTION_DISCONNECT,
    "error": pb.ACTION_ERROR,
}
_MODES = {
    "": pb.DISCONNECT_MODE_UNSPECIFIED,
    "If421": pb.DISCONNECT_MODE_IF_421,
    "FollowWith421": pb.DISCONNECT_MODE_FOLLOW_WITH_421,
    "ForceDisconnect": pb.DISCONNECT_MODE_FORCE_DISCONNECT,
}
_HEADER_OPS = {
    "prepend": pb.HeaderChange.OP_PREPEND,
    "append": pb.HeaderChange.OP_APPEND,
    "remove": pb.HeaderChange.OP_REMOVE,
}


class RequestError(ValueError):
    """A request the daemon cannot make sense of."""


def check_request(request: pb.EvaluateRequest) -> None:
    expected = EVENT_ARGS.get(request.event)
    if expected is None:
        raise RequestError(f"unknown event {request.event!r}; expected one of {sorted(EVENT_ARGS)}")
    if request.WhichOneof("args") != expected:
        raise RequestError(f"event {request.event} needs args.{expected}")


def host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def predefined_meta(request: pb.EvaluateRequest) -> dict[str, str]:
    """The conn_meta keys every session has, from the request's facts."""
    client, session = request.client, request.session
    meta = dict(client.labels)
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
    kind = request.WhichOneof("args")
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


class Evaluator:
    """Evaluates requests against one loaded policy revision."""

    def __init__(self, policy: LuaPolicy) -> None:
        self.policy = policy
        self.handled = frozenset(policy.handled_events)

    def evaluate(self, request: pb.EvaluateRequest) -> pb.Verdict:
        check_request(request)
        policy = self.policy
        verdict = pb.Verdict(
            request_id=request.request_id,
            revision=policy.revision,
            decision_id=secrets.token_hex(8),
            action=pb.ACTION_CONTINUE,
        )
        if request.event not in self.handled:
            return verdict
        table = policy.table
        raw = table(dict(request.conn_meta)) if request.conn_meta else None
        try:
            result = policy.call(
                request.event,
                table(predefined_meta(request)),
                raw,
                table(event_args(request), recursive=True),
            )
        except lua54.LuaError as e:  # raised outside the handler's xpcall (e.g. memory)
            result = ("error", 0, "", "", str(e) or type(e).__name__, None, None, None, False, None)
        action, code, text, mode, error, meta, headers, extensions, auth, msg_meta = result
        verdict.action = _ACTIONS[action]
        if action == "error":
            verdict.error = error.splitlines()[0]
            log.warning(
                "policy error",
                extra={
                    "event": request.event,
                    "session_id": request.session.id,
                    "decision_id": verdict.decision_id,
                    "revision": policy.revision,
                    "error": error,
                },
            )
            return verdict
        verdict.code = code
        verdict.text = text
        verdict.mode = _MODES[mode]
        verdict.auth_granted = auth
        if meta is not None:
            verdict.meta_set.update(meta)
        if msg_meta is not None:
            verdict.msg_meta_set.update(msg_meta)
        if headers is not None:
            verdict.header_changes.extend(
                pb.HeaderChange(op=_HEADER_OPS[op], name=name, value=value)
                for op, name, value in (tuple(h.values()) for h in headers.values())
            )
        if extensions is not None:
            verdict.ehlo_extensions.items.extend(extensions.values())
        return verdict
