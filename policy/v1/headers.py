"""What a verdict's HeaderChange operations do to a message: part of the contract.

The edge applies them to the message it stores or relays; the daemon's policy
test runner applies them between the two data-phase events. The daemon's
message object (policyd/lua/kumo.lua) follows the same rules, so the stored
message is what `msg:get_data()` showed the policy: the header section ends at
the first empty line; a line starting with space or tab continues the field
before it; new fields end with CRLF; names compare case-insensitively.
"""

from __future__ import annotations

from collections.abc import Iterable

from policy.v1 import policy_pb2 as pb

_OP = pb.HeaderChange


def split_fields(data: bytes) -> tuple[list[bytes], bytes]:
    """The header fields (with their line endings) and the rest (blank line, body)."""
    fields: list[bytes] = []
    pos, size = 0, len(data)
    while pos < size:
        eol = data.find(b"\n", pos)
        end = size if eol < 0 else eol + 1
        line = data[pos:end]
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
        pos = end
    return fields, data[pos:]


def _name(field: bytes) -> bytes | None:
    name, colon, _ = field.partition(b":")
    return name.lower() if colon else None


def apply_header_changes(data: bytes, changes: Iterable[pb.HeaderChange]) -> bytes:
    changes = list(changes)
    if not changes:
        return data
    fields, rest = split_fields(data)
    for change in changes:
        name = change.name.encode()
        if change.op == _OP.OP_REMOVE:
            fields = [f for f in fields if _name(f) != name.lower()]
            continue
        line = name + b": " + change.value.encode() + b"\r\n"
        if change.op == _OP.OP_PREPEND:
            fields.insert(0, line)
        elif change.op == _OP.OP_APPEND:
            fields.append(line)
    return b"".join(fields) + rest


def message_after(data: bytes, verdict: pb.Verdict) -> bytes:
    """The message as a continuing data-phase verdict leaves it: replaced as a
    whole, or with its header changes made."""
    if verdict.HasField("data"):
        return verdict.data
    return apply_header_changes(data, verdict.header_changes)
