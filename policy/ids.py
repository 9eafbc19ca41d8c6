"""Ids for sessions, messages and decisions: 64 random bits as 16 hex digits.

Unique, not secret: drawn from a generator seeded once per process from the
operating system, so making one costs no system call (they are made for every
session, message and decision).
"""

from __future__ import annotations

import os
import random

_ids = random.Random(os.urandom(16))


def new_id() -> str:
    return f"{_ids.getrandbits(64):016x}"
