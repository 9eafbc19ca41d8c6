"""Who is calling: the verified identity of an edge, and who may use admin calls.

With mutual TLS, an edge's identity is the common name of its client certificate
(verified against --tls-client-ca). Its requests must carry that name as their
edge id, and the policy sees it as conn_meta `edge_cert_subject`. Admin calls
(Status, Reload) need a bearer token from --admin-token-file, or a client
certificate whose name is in --admin-subject; with neither configured, only
local callers (loopback, Unix socket) may use them. Evaluation rights never
grant admin rights.
"""

from __future__ import annotations

import hmac
from pathlib import Path

import grpc

from policy.addresses import grpc_peer


def peer_identity(context: grpc.aio.ServicerContext) -> str | None:
    """The common name of the caller's verified client certificate, if any."""
    names = context.auth_context().get("x509_common_name")
    return next(iter(names)).decode() if names else None


def is_local_peer(peer: str) -> bool:
    """A caller on loopback or a Unix socket (gRPC peer strings: ipv4:127.0.0.1:port,
    ipv6:[::1]:port, unix:path)."""
    address = grpc_peer(peer)
    return address is not None and address.is_local


class AdminAccess:
    def __init__(self, token_file: Path | None = None, subjects: tuple[str, ...] = ()) -> None:
        self.token = token_file.read_text().strip() if token_file else None
        if token_file and not self.token:
            raise ValueError(f"{token_file}: the admin token file is empty")
        self.subjects = frozenset(subjects)

    def allows(self, context: grpc.aio.ServicerContext) -> bool:
        if self.token is None and not self.subjects:
            return is_local_peer(context.peer())
        if self.token is not None:
            for key, value in context.invocation_metadata() or ():
                given = value.encode() if isinstance(value, str) else value
                if key == "authorization" and hmac.compare_digest(
                    given, f"Bearer {self.token}".encode()
                ):
                    return True
        identity = peer_identity(context)
        return identity is not None and identity in self.subjects
