"""What the policy is told about one SMTP session, and the transaction in progress.

`EdgeSession` holds the facts sent with every request (peer, listener, EHLO
domain, TLS, authentication) and the conn_meta the policy has set so far; the
SMTP state machine records facts here as it learns them. `Transaction` is the
envelope of the MAIL transaction in progress. Neither knows of sockets or of
where accepted mail goes.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import cast

from policy.addresses import join
from policy.ids import new_id
from policy.v1 import policy_pb2 as pb
from smtpedge.listener_params import ListenerParams

Subject = tuple[tuple[tuple[str, str], ...], ...]


class EdgeSession:
    __slots__ = ("conn_meta", "esmtp", "facts", "id", "params")

    def __init__(self, peer: tuple[str, int], local: tuple[str, int]) -> None:
        self.id = new_id()
        # Keys the policy set in this session, as JSON texts; sent with every request.
        self.conn_meta: dict[str, str] = {}
        # The session facts sent with every request.
        self.facts = pb.Session(
            id=self.id, peer_ip=peer[0], peer_port=peer[1], local_ip=local[0], local_port=local[1]
        )
        self.esmtp = False  # greeted with EHLO (rather than HELO)
        # How its listener is shaped (listener_params.py), when the edge says.
        self.params: ListenerParams | None = None

    @property
    def peer(self) -> str:
        return join(self.facts.peer_ip, self.facts.peer_port)

    def log_fields(self) -> dict[str, str]:
        return {"session_id": self.id, "peer": self.peer}

    def secured(self, ssl_object: ssl.SSLObject | ssl.SSLSocket) -> None:
        """Records the TLS facts of the connection (after STARTTLS or on a TLS listener)."""
        tls = self.facts.tls
        tls.protocol_version = ssl_object.version() or ""
        tls.cipher = (ssl_object.cipher() or ("",))[0]
        certificate = ssl_object.getpeercert()
        # The subject: relative distinguished names, each (key, value) pairs.
        subject = cast(Subject, certificate.get("subject", ()) if certificate else ())
        if subject:
            tls.peer_subject_name = ",".join(
                f"{key}={value}" for rdn in subject for key, value in rdn
            )

    def authenticated_as(self, identities: pb.AuthInfo) -> None:
        self.facts.auth.CopyFrom(identities)

    def greeted(self, domain: str | None, esmtp: bool = False) -> None:
        """Records the outcome of EHLO/HELO: the domain, or None when refused
        (and after STARTTLS, where the client starts over, RFC 3207)."""
        self.facts.ehlo_domain = domain or ""
        self.esmtp = esmtp and domain is not None


@dataclass(slots=True)
class Transaction:
    """The envelope of one MAIL transaction: as the client gave it, as accepted."""

    sender: str  # "" for the null sender
    params: list[str]  # MAIL FROM's ESMTP parameters, upper case
    recipients: list[str] = field(default_factory=list)
