"""aiosmtpd hooks: ask the policy at each stage and answer with its verdict.

Knows nothing of sockets. Each hook builds a request from the session, asks the
policy client, applies what the verdict changes (conn_meta, headers, the EHLO
extension list) and returns the reply to send: aiosmtpd's usual one when the
policy lets the command proceed, the rendered verdict otherwise.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from datetime import UTC, datetime
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope

from policy.v1 import policy_pb2 as pb
from policy.v1.headers import apply_header_changes
from smtpedge import metrics
from smtpedge.config import EdgeConfig
from smtpedge.delivery import Delivery
from smtpedge.policy_client import PolicyClient
from smtpedge.replies import Reply, render
from smtpedge.session import EdgeSession, new_id
from smtpedge.stages import EVENT_STAGE
from smtpedge.trace import protocol, received_header

log = logging.getLogger("smtpedge.session")

# Advertised in addition to what aiosmtpd lists (it reads pipelined commands in order).
EXTRA_EXTENSIONS = ("PIPELINING",)

# What an event the policy has no handler for gets, without asking.
NOT_HANDLED = pb.Verdict(action=pb.ACTION_CONTINUE)
AUTH_INVALID = "535 5.7.8 Authentication credentials invalid"


def ehlo_reply(hostname: str, extensions: list[str]) -> Reply:
    """The EHLO answer as one reply, so it goes out in one write."""
    if not extensions:
        return Reply((f"250 {hostname}",))
    *init, last = extensions
    return Reply((f"250-{hostname}", *(f"250-{e}" for e in init), f"250 {last}"))


async def read_credentials(server: SMTP, args: list[str]) -> tuple[str, str, str] | str | None:
    """(authz, authc, password) from AUTH PLAIN or LOGIN, with the challenges they need;
    a reply string when the client's data is unusable; None when aiosmtpd answered."""
    mechanism = args[0].upper()

    async def read(initial: str | None, challenge: str) -> bytes | None:
        if initial is not None:
            try:
                return base64.b64decode(initial, validate=True)
            except binascii.Error:
                return None
        answer = await server.challenge_auth(challenge)
        return answer if isinstance(answer, bytes) else None

    initial = args[1] if len(args) > 1 else None
    try:
        if mechanism == "PLAIN":
            blob = await read(initial, "")
            if blob is None:
                return "501 5.5.2 Can't decode base64" if initial else None
            parts = blob.split(b"\0")
            if len(parts) != 3:
                return "501 5.5.2 Can't split auth value"
            authz, authc, password = (part.decode("utf-8") for part in parts)
            return authz, authc, password
        username = await read(initial, "Username:")
        if username is None:
            return "501 5.5.2 Can't decode base64" if initial else None
        password_bytes = await read(None, "Password:")
        if password_bytes is None:
            return None
        return "", username.decode("utf-8"), password_bytes.decode("utf-8")
    except UnicodeDecodeError:
        return "501 5.5.2 Credentials are not valid UTF-8"


class PolicyHandler:
    def __init__(
        self, policy: PolicyClient, client: pb.Client, delivery: Delivery, config: EdgeConfig
    ) -> None:
        self.policy = policy
        self.client = client
        self.hostname = client.hostname
        self.delivery = delivery
        self.config = config
        # aiosmtpd's hook table ("EHLO" -> handle_EHLO, ...), worked out once.
        self.hooks = {
            name[7:]: getattr(self, name) for name in dir(self) if name.startswith("handle_")
        }

    async def ask(
        self, session: EdgeSession, event: str, **args: Any
    ) -> tuple[pb.Verdict | None, Reply | None]:
        """One policy call: the verdict and the reply it calls for (None: proceed).

        No verdict gets the fail-mode reply, unless the stage fails open: then
        the command proceeds as if the policy had let it, logged and counted.
        """
        if not self.policy.handles(event):
            return NOT_HANDLED, None
        stage = EVENT_STAGE[event]
        request = pb.EvaluateRequest(
            event=event,
            client=self.client,
            session=session.facts,
            conn_meta=session.conn_meta,
            dry_run=self.config.dry_run,
            **args,
        )
        began = time.monotonic()
        verdict = await self.policy.evaluate(request, self.config.timeout(stage))
        metrics.POLICY_CALL_SECONDS.labels(stage.value).observe(time.monotonic() - began)
        if verdict is None:
            if stage in self.config.fail_open:
                metrics.POLICY_FAIL_OPEN.labels(stage.value).inc()
                log.warning(
                    "no verdict: failing open",
                    extra={"session_id": session.id, "event": event, "stage": stage.value},
                )
                return pb.Verdict(action=pb.ACTION_CONTINUE), None
            metrics.POLICY_UNAVAILABLE.labels(stage.value).inc()
        else:
            session.conn_meta.update(verdict.meta_set)
        reply = render(verdict, self.hostname, stage)
        if reply is not None:
            log.info(
                "refused",
                extra={
                    "session_id": session.id,
                    "event": event,
                    "decision_id": verdict.decision_id if verdict else None,
                    "revision": verdict.revision if verdict else None,
                    "reply": reply.lines,
                    "close": reply.close,
                },
            )
        return verdict, reply

    async def handle_connect(self, server: SMTP, session: EdgeSession) -> Reply | None:
        """Before the banner: a reply here replaces the banner and ends the session."""
        _, reply = await self.ask(
            session, "smtp_server_connection_accepted", connect=pb.ConnectArgs()
        )
        return reply

    async def handle_EHLO(
        self,
        server: SMTP,
        session: EdgeSession,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str | Reply]:
        await self.delivery.reset(session)
        extensions = [r[4:] for r in responses[1:-1]] + [*EXTRA_EXTENSIONS, responses[-1][4:]]
        if not self.policy.handles("smtp_server_auth_plain"):  # nothing could grant it
            extensions = [e for e in extensions if not e.startswith("AUTH ")]
        verdict, reply = await self.ask(
            session,
            "smtp_server_ehlo",
            ehlo=pb.EhloArgs(domain=hostname, extensions=extensions),
        )
        if reply is not None:
            session.greeted(None)
            return [reply]
        assert verdict is not None
        if verdict.HasField("ehlo_extensions"):
            extensions = list(verdict.ehlo_extensions.items)
        session.greeted(hostname)
        return [ehlo_reply(self.hostname, extensions)]

    async def handle_HELO(
        self, server: SMTP, session: EdgeSession, envelope: Envelope, hostname: str
    ) -> str | Reply:
        await self.delivery.reset(session)
        _, reply = await self.ask(
            session, "smtp_server_ehlo", ehlo=pb.EhloArgs(domain=hostname, helo=True)
        )
        if reply is not None:
            session.greeted(None)
            return reply
        session.greeted(hostname)
        return f"250 {self.hostname}"

    async def handle_AUTH(
        self, server: SMTP, session: EdgeSession, envelope: Envelope, args: list[str]
    ) -> str | Reply | None:
        """AUTH PLAIN and LOGIN, decided by the policy's smtp_server_auth_plain.

        aiosmtpd has already refused AUTH before TLS (538 5.7.11), a second AUTH
        and unknown mechanisms. No verdict, even on a stage that fails open,
        never grants: only the policy's `true` does.
        """
        credentials = await read_credentials(server, args)
        if credentials is None or isinstance(credentials, str):
            return credentials  # None: aiosmtpd answered (the client cancelled)
        authz, authc, password = credentials
        verdict, reply = await self.ask(
            session,
            "smtp_server_auth_plain",
            auth_plain=pb.AuthPlainArgs(authz=authz, authc=authc, password=password),
        )
        if reply is not None:
            return reply
        if verdict is None or not verdict.auth_granted:
            return AUTH_INVALID
        session.authenticated_as(authz, authc)
        log.info("authenticated", extra={"session_id": session.id, "authn_id": authc})
        return "235 2.7.0 Authentication successful"

    async def handle_MAIL(
        self,
        server: SMTP,
        session: EdgeSession,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str | Reply:
        sender = "" if address == "<>" else address
        _, reply = await self.ask(
            session,
            "smtp_server_mail_from",
            mail_from=pb.MailFromArgs(sender=sender, params=options),
        )
        if reply is not None:
            return reply
        reply = await self.delivery.mail(session, sender, options)
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: EdgeSession,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str | Reply:
        if len(envelope.rcpt_tos) >= self.config.max_recipients:
            return "452 4.5.3 Error: too many recipients"
        _, reply = await self.ask(
            session,
            "smtp_server_rcpt_to",
            rcpt_to=pb.RcptToArgs(recipient=address, params=options),
        )
        if reply is not None:
            return reply
        reply = await self.delivery.rcpt(session, address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(
        self, server: SMTP, session: EdgeSession, envelope: Envelope
    ) -> str | Reply:
        message_id = new_id()
        data: bytes = envelope.original_content or b""
        sender = "" if envelope.mail_from == "<>" else (envelope.mail_from or "")
        msg_meta: dict[str, str] = {}
        for event in ("smtp_server_data", "smtp_server_message_received"):
            verdict, reply = await self.ask(
                session,
                event,
                message=pb.MessageArgs(
                    message_id=message_id,
                    sender=sender,
                    recipients=envelope.rcpt_tos,
                    data=data,
                    msg_meta=msg_meta,
                ),
            )
            if reply is not None:
                await self.delivery.reset(session)  # the transaction is over
                return reply
            assert verdict is not None
            data = apply_header_changes(data, verdict.header_changes)
            msg_meta.update(verdict.msg_meta_set)
        if self.config.received_header:
            data = self._received(session, envelope, message_id) + data
        return await self.delivery.deliver(session, sender, envelope.rcpt_tos, data, message_id)

    def _received(self, session: EdgeSession, envelope: Envelope, message_id: str) -> bytes:
        facts = session.facts
        return received_header(
            ehlo=facts.ehlo_domain,
            peer_ip=facts.peer_ip,
            hostname=self.hostname,
            protocol=protocol(session.extended_smtp, facts.HasField("tls"), facts.HasField("auth")),
            message_id=message_id,
            recipients=envelope.rcpt_tos,
            when=datetime.now(UTC),
        )

    async def handle_RSET(self, server: SMTP, session: EdgeSession, envelope: Envelope) -> str:
        await self.delivery.reset(session)
        return "250 OK"

    async def session_ended(self, session: EdgeSession) -> None:
        await self.delivery.reset(session)
