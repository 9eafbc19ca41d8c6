"""Ids for sessions, messages and decisions.

Session and decision ids are 64 random bits as 16 hex digits. Message ids are
KumoMTA's: a version 1 UUID (time-based, so they sort by reception time within
a host) as 32 hex digits without dashes; the node is random per process
(RFC 4122 4.5, multicast bit set) rather than a MAC address, so replicas on one
host never collide and no hardware id leaks into mail headers.

Unique, not secret: drawn from a generator seeded once per process from the
operating system, so making one costs no system call (they are made for every
session, message and decision).
"""

from __future__ import annotations

import os
import random
import uuid

_ids = random.Random(os.urandom(16))
_NODE = _ids.getrandbits(48) | (1 << 40)


def new_id() -> str:
    return f"{_ids.getrandbits(64):016x}"


def new_message_id() -> str:
    return uuid.uuid1(node=_NODE, clock_seq=_ids.getrandbits(14)).hex
