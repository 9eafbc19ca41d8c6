"""How a session is shaped: the edge's own flags, and where they were left at
their defaults, the policy's listener (kumo.start_esmtp_listener, sent in
PolicyInfo.listeners), as a KumoMTA listener would be shaped by it.

Pure: the edge's config and the policy's listener in, the parameters out, with
where each came from, so the edge can log what it applies.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from policy.v1 import policy_pb2 as pb
from smtpedge.config import EdgeConfig


@dataclass(frozen=True)
class ListenerParams:
    hostname: str
    banner: str  # "220 HOSTNAME BANNER"
    max_message_size: int  # 0: no limit
    max_recipients: int  # per transaction
    max_messages_per_connection: int  # recipients per connection, as KumoMTA counts them
    received_header: bool
    batch_handling: int  # pb.BatchHandling; unspecified: one message per recipient


# Each parameter: the EdgeConfig field (its flag) and the Listener field.
_FROM = {
    "hostname": ("hostname", "hostname"),
    "banner": ("banner", "banner"),
    "max_message_size": ("max_message_size", "max_message_size"),
    "max_recipients": ("max_recipients", "max_recipients_per_message"),
    "max_messages_per_connection": (
        "max_messages_per_connection",
        "max_messages_per_connection",
    ),
    "received_header": ("received_header", "received_header"),
    "batch_handling": ("batch_handling", "batch_handling"),
}


def params(config: EdgeConfig, listener: pb.Listener | None) -> tuple[ListenerParams, list[str]]:
    """The parameters, and the names of those the policy's listener set (the rest
    are the edge's: given on its command line or environment, or its defaults)."""
    values, from_policy = {}, []
    for name in (f.name for f in fields(ListenerParams)):
        flag, field = _FROM[name]
        value = getattr(config, flag)
        if listener is not None and flag not in config.explicit and _has(listener, field):
            value = getattr(listener, field)
            from_policy.append(name)
        values[name] = value
    return ListenerParams(**values), from_policy


def _has(listener: pb.Listener, field: str) -> bool:
    if field == "batch_handling":  # an enum: unspecified is "not set"
        return listener.batch_handling != pb.BATCH_HANDLING_UNSPECIFIED
    return listener.HasField(field)
