"""Per-connection state the policy needs, carried on aiosmtpd's Session."""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

from aiosmtpd.smtp import Session

from policy.v1 import policy_pb2 as pb

_ids = random.Random(os.urandom(16))


def new_id() -> str:
    """A random 64-bit id for sessions and messages (unique, not secret; no syscall)."""
    return f"{_ids.getrandbits(64):016x}"


class EdgeSession(Session):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.id = new_id()
        # Keys the policy set in this session, as JSON texts; sent with every request.
        self.conn_meta: dict[str, str] = {}
        # The session facts sent with every request.
        self.facts = pb.Session(id=self.id)
        # Relay mode: the upstream connection of the transaction in progress.
        self.upstream: Any = None
        self.upstream_recipients = 0

    def bind(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername") or ("", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        self.facts.peer_ip, self.facts.peer_port = peer[0], peer[1]
        self.facts.local_ip, self.facts.local_port = local[0], local[1]

    def greeted(self, domain: str | None) -> None:
        """Records the outcome of EHLO/HELO: the domain, or None after a refusal."""
        self.host_name = domain
        self.facts.ehlo_domain = domain or ""
