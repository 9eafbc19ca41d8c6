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

    def renewed(self) -> EdgeSession:
        """The session after STARTTLS: same id and metadata, but no greeting yet
        (RFC 3207: the client starts over with EHLO)."""
        fresh = EdgeSession(self.loop)
        fresh.id, fresh.conn_meta, fresh.facts = self.id, self.conn_meta, self.facts
        fresh.peer = self.peer
        fresh.upstream = self.upstream  # reset at the next EHLO
        fresh.greeted(None)
        return fresh

    def secured(self, transport: asyncio.BaseTransport) -> None:
        """Records the TLS facts of the connection (after STARTTLS or on a TLS listener)."""
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        tls = self.facts.tls
        tls.protocol_version = ssl_object.version() or ""
        tls.cipher = (ssl_object.cipher() or ("",))[0]
        certificate = ssl_object.getpeercert()
        if certificate:
            tls.peer_subject_name = ",".join(
                f"{key}={value}" for rdn in certificate.get("subject", ()) for key, value in rdn
            )
        self.ssl = {"ssl_object": ssl_object}

    def authenticated_as(self, authz: str, authc: str) -> None:
        self.authenticated = True
        self.facts.auth.authn_id = authc
        self.facts.auth.authz_id = authz or authc

    def greeted(self, domain: str | None) -> None:
        """Records the outcome of EHLO/HELO: the domain, or None after a refusal."""
        self.host_name = domain
        self.facts.ehlo_domain = domain or ""
