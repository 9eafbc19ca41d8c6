"""The SMTP events a policy can handle: one row each, read by everything that
deals with events.

The edge asks at each event's stage (deadlines and fail modes are set per
stage); the daemon checks that a request carries its event's arguments and
hands them to the Lua handler; the policy test runner and policyctl know events
by their short names; the decision log records the arguments named here. A new
event is one row here plus its Lua side (the handler's arguments, in kumo.lua).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from policy.v1 import policy_pb2 as pb


class Stage(Enum):
    """The SMTP stages at which the edge asks, as operators name them in flags."""

    CONNECT = "connect"
    EHLO = "ehlo"
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    # Before each reply is sent (smtp_server_rewrite_response): no verdict
    # keeps the reply, whatever the fail mode.
    RESPONSE = "response"


@dataclass(frozen=True)
class Event:
    name: str  # KumoMTA's event name, as policies register handlers for it
    field: str  # the EvaluateRequest `args` field that carries its arguments
    stage: Stage
    short: str  # its name in policyctl and in policy test cases
    # (log key, argument field) pairs the decision log records; a bytes field is
    # recorded as its length, never its content.
    logged: tuple[tuple[str, str], ...] = ()
    required: tuple[str, ...] = ()  # argument fields that must not be empty
    # The argument field a policy test step's plain value fills (`mail_from =
    # "a@b.example"`); a step may give a table of fields instead.
    value: str | None = None
    # Whether a dry run may turn its verdict into a "continue": never for AUTH,
    # where that would log a client in.
    dry_run: bool = True

    def arguments(self, **values: Any) -> Any:
        """The event's argument message, with the fields given by name."""
        return ARGUMENT_TYPES[self.field](**values)

    def request(self, arguments: Any, **fields: Any) -> pb.EvaluateRequest:
        """An EvaluateRequest for this event (`fields`: client, session, conn_meta, ...)."""
        return pb.EvaluateRequest(event=self.name, **{self.field: arguments}, **fields)


_MESSAGE_LOGGED = (
    ("message_id", "message_id"),
    ("sender", "sender"),
    ("recipients", "recipients"),
    ("bytes", "data"),
)

# In session order.
EVENTS: tuple[Event, ...] = (
    Event("smtp_server_connection_accepted", "connect", Stage.CONNECT, "connect"),
    Event(
        "smtp_server_ehlo", "ehlo", Stage.EHLO, "ehlo",
        logged=(("ehlo", "domain"),), required=("domain",), value="domain",
    ),
    # The password is an argument the decision log must never see: authc only.
    Event(
        "smtp_server_auth_plain", "auth_plain", Stage.AUTH, "auth_plain",
        logged=(("authc", "authc"),), dry_run=False,
    ),
    Event(
        "smtp_server_mail_from", "mail_from", Stage.MAIL, "mail_from",
        logged=(("sender", "sender"),), value="sender",
    ),
    Event(
        "smtp_server_rcpt_to", "rcpt_to", Stage.RCPT, "rcpt_to",
        logged=(("recipient", "recipient"),), required=("recipient",), value="recipient",
    ),
    Event("smtp_server_data", "message", Stage.DATA, "data", _MESSAGE_LOGGED, value="data"),
    # Between the two: how the transaction's recipients become messages.
    Event(
        "smtp_server_split_transaction", "message", Stage.DATA, "split_transaction",
        _MESSAGE_LOGGED, value="data",
    ),
    Event(
        "smtp_server_message_received", "message", Stage.DATA, "message_received",
        _MESSAGE_LOGGED, value="data",
    ),
    # Not in the sequence: before every reply the session sends.
    Event(
        "smtp_server_rewrite_response", "rewrite_response", Stage.RESPONSE, "rewrite_response",
        logged=(("status", "status"), ("command", "command")),
    ),
    # Fires first of all (before smtp_server_connection_accepted), shaping the
    # session; listed last so the connect step of a test case stays the former.
    Event(
        "smtp_server_get_dynamic_parameters", "dynamic_parameters", Stage.CONNECT,
        "dynamic_parameters", logged=(("listener", "listener"),),
    ),
)  # fmt: skip

BY_NAME: Mapping[str, Event] = {event.name: event for event in EVENTS}
BY_SHORT: Mapping[str, Event] = {event.short: event for event in EVENTS}

# The message class of each `args` field, from the contract itself.
ARGUMENT_TYPES: Mapping[str, Any] = {
    field.name: getattr(pb, field.message_type.name)
    for field in pb.EvaluateRequest.DESCRIPTOR.oneofs_by_name["args"].fields
    if field.message_type is not None
}

(
    CONNECT,
    EHLO,
    AUTH_PLAIN,
    MAIL_FROM,
    RCPT_TO,
    DATA,
    SPLIT_TRANSACTION,
    MESSAGE_RECEIVED,
    REWRITE_RESPONSE,
    DYNAMIC_PARAMETERS,
) = EVENTS


def of_stage(stage: Stage) -> tuple[Event, ...]:
    """The events of one stage, in the order they fire."""
    return tuple(event for event in EVENTS if event.stage is stage)
