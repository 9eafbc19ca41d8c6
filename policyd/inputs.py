"""What a handler is given, from the request alone (the daemon keeps no
session state): the predefined conn_meta keys from the request's client and
session facts, what the policy set earlier in the session (request.conn_meta),
and the event's arguments."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from policy.addresses import join
from policy.events import ARGUMENT_TYPES, Event
from policy.v1 import policy_pb2 as pb

# What a handler is given: predefined conn_meta, what the session set, the event's arguments.
# (predefined conn_meta, conn_meta the policy set, event arguments, the
# session's AuthInfo when it authenticated).
Inputs = tuple[dict[str, Any], dict[str, str] | None, dict[str, Any], str | None]

# Keys only the daemon may state: they come from what it verified itself.
VERIFIED_KEYS = ("edge_cert_subject",)


def session_meta(request: pb.EvaluateRequest) -> dict[str, str] | None:
    """The metadata the policy set earlier in the session, as the edge sent it back
    (less anything claiming what only the daemon can verify)."""
    if not request.conn_meta:
        return None
    meta = dict(request.conn_meta)
    for key in VERIFIED_KEYS:
        meta.pop(key, None)
    return meta or None


def predefined_meta(request: pb.EvaluateRequest, identity: str | None = None) -> dict[str, str]:
    """The conn_meta keys every session has, from the request's facts (and the
    edge's verified certificate name, when it called over mutual TLS)."""
    client, session = request.client, request.session
    meta = dict(client.labels) if client.labels else {}
    if identity is not None:
        meta["edge_cert_subject"] = identity
    meta["reception_protocol"] = "ESMTP"
    meta["received_from"] = join(session.peer_ip, session.peer_port)
    meta["received_via"] = join(session.local_ip, session.local_port)
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


def _shape(message_type: Any) -> tuple[tuple[str, type | None], ...]:
    """Each field of an argument message, and what it becomes for Lua (a list, a
    dict, or as it is)."""
    out = []
    for field in message_type.DESCRIPTOR.fields:
        is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
        out.append((field.name, dict if is_map else list if field.is_repeated else None))
    return tuple(out)


_SHAPES: Mapping[str, tuple[tuple[str, type | None], ...]] = {
    name: _shape(message_type) for name, message_type in ARGUMENT_TYPES.items()
}


def event_args(request: pb.EvaluateRequest, event: Event) -> dict[str, Any]:
    """The event's arguments by field name, as plain values (kumo.lua makes the
    handler's arguments from them); empty lists and maps are left out."""
    message = getattr(request, event.field)
    out = {}
    for name, kind in _SHAPES[event.field]:
        value = getattr(message, name)
        if kind is None:
            out[name] = value
        elif value:
            out[name] = kind(value)
    return out


def handler_inputs(request: pb.EvaluateRequest, event: Event, identity: str | None) -> Inputs:
    """All a handler is given for `request` (and what the decision log reads)."""
    return (
        predefined_meta(request, identity),
        session_meta(request),
        event_args(request, event),
        auth_info(request.session),
    )


def auth_info(session: pb.Session) -> str | None:
    """The session's AuthInfo as conn_meta:auth_info() gives it (less
    peer_address, which kumo.lua adds), as JSON that Lua decodes only when a
    handler asks; None before AUTH."""
    if not session.HasField("auth"):
        return None
    identities = [{"identity": i.identity, "context": i.context} for i in session.auth.identities]
    return json.dumps({"identities": identities, "groups": list(session.auth.groups)})
