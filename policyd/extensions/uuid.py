"""kumo.uuid: UUIDs of versions 1, 4, 6 and 7, and parsing, with the fields of
KumoMTA's Uuid object.

Version 1 and 6 UUIDs carry this host's node id (its MAC address, as Python's
uuid.getnode finds it); version 7 ones are monotonic within the process, as
the Rust uuid crate makes them: a counter in the 12 bits after the millisecond
timestamp keeps the order of UUIDs made in the same millisecond. Parsing takes
the four forms KumoMTA's does: simple, hyphenated, braced and URN, hex digits
in either case.
"""

from __future__ import annotations

import os
import secrets
import string
import threading
import time
import uuid as std_uuid
from typing import Any

from policyd.extensions import Context, HostFunctions

_HEX = frozenset(string.hexdigits)
_HYPHENS = (8, 13, 18, 23)


def fields(u: std_uuid.UUID) -> dict[str, str | bytes]:
    """The fields of KumoMTA's Uuid object."""
    return {
        "hyphenated": str(u),
        "simple": u.hex,
        "braced": "{" + str(u) + "}",
        "urn": u.urn,
        "bytes": u.bytes,
    }


def parse(text: str) -> std_uuid.UUID:
    """ValueError unless text is a UUID in one of the four forms."""
    body = text
    if len(text) == 38 and text[0] == "{" and text[-1] == "}":
        body = text[1:-1]
    elif len(text) == 45 and text.startswith("urn:uuid:"):
        body = text[9:]
    if len(body) == 36 and all(body[i] == "-" for i in _HYPHENS):
        body = body.replace("-", "")
    if len(body) != 32 or not _HEX.issuperset(body):
        raise ValueError(
            "expected 32 hex digits, plain, hyphenated as 8-4-4-4-12, "
            "in braces {...} or as urn:uuid:..."
        )
    return std_uuid.UUID(hex=body)


def new_v6() -> std_uuid.UUID:
    """Version 1's timestamp, clock sequence and node, the timestamp's most
    significant bits first so that the UUIDs sort by time."""
    v1 = std_uuid.uuid1()
    stamp = v1.time  # 60 bits
    high = (stamp >> 12) << 80 | 0x6 << 76 | (stamp & 0xFFF) << 64
    return std_uuid.UUID(int=high | (v1.int & (1 << 64) - 1))


class V7:
    """Version 7 UUIDs, in order within the process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.millis = 0
        self.counter = 0

    def new(self) -> std_uuid.UUID:
        with self.lock:
            millis = time.time_ns() // 1_000_000
            if millis <= self.millis:
                millis, self.counter = self.millis, self.counter + 1
                if self.counter > 0xFFF:
                    millis, self.counter = millis + 1, secrets.randbits(11)
            else:
                self.counter = secrets.randbits(11)
            self.millis = millis
            value = millis << 80 | 0x7 << 76 | self.counter << 64
            tail = int.from_bytes(os.urandom(8), "big") & (1 << 62) - 1
            return std_uuid.UUID(int=value | 0b10 << 62 | tail)


def functions(context: Context) -> HostFunctions:
    table = context.lua.table_from
    v7 = V7()

    def parse_(text: str) -> tuple[Any, str | None]:
        try:
            return table(fields(parse(text))), None
        except ValueError as e:
            return None, str(e)

    return {
        "parse": parse_,
        "new_v1": lambda: table(fields(std_uuid.uuid1())),
        "new_v4": lambda: table(fields(std_uuid.uuid4())),
        "new_v6": lambda: table(fields(new_v6())),
        "new_v7": lambda: table(fields(v7.new())),
    }
