"""The hooks the SMTP state machine calls: ask the policy, apply, answer.

Knows nothing of sockets. Each hook builds the request for its event (from
the event table, policy.events), asks the policy client, applies what the
verdict changes (conn_meta, headers, message meta, the EHLO extension list),
and returns None when the command may proceed or the Reply that replaces the
usual answer. Delivery (Maildir or relay) is asked last, once the policy has
let a stage pass.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from policy import events
from policy.auth import granted
from policy.events import Event, Stage
from policy.ids import new_message_id
from policy.reception import NO_MESSAGE, receive
from policy.v1 import policy_pb2 as pb
from smtpedge import metrics
from smtpedge.config import EdgeConfig
from smtpedge.delivery import Delivery
from smtpedge.listener_params import ListenerParams, params
from smtpedge.policy_client import PolicyClient
from smtpedge.replies import Reply, parse_replies, render, rewritten
from smtpedge.session import EdgeSession, Transaction
from smtpedge.trace import protocol, received_header

log = logging.getLogger("smtpedge.session")

# What an event the policy has no handler for gets, without asking.
NOT_HANDLED = pb.Verdict(action=pb.ACTION_CONTINUE)
AUTH_INVALID = Reply(("535 5.7.8 Authentication credentials invalid",))
# smtp_server_split_transaction left no recipient: nothing to store or relay.
NO_BATCH = Reply(("{} {}".format(*NO_MESSAGE),))


class PolicyHandler:
    def __init__(
        self, policy: PolicyClient, client: pb.Client, delivery: Delivery, config: EdgeConfig
    ) -> None:
        self.policy = policy
        self.client = client
        self.delivery = delivery
        self.config = config
        # How a session is shaped when its listener does not say (tests, chiefly).
        self._params = params(config, None)[0]
        self._timeouts = {stage: config.timeout(stage) for stage in Stage}
        self._seconds = {s: metrics.POLICY_CALL_SECONDS.labels(s.value) for s in Stage}

    async def ask(self, session: EdgeSession, event: Event, arguments: Any) -> pb.Verdict | None:
        """One policy call: the verdict, with its conn_meta changes applied.

        None when no verdict came; then the stage's fail mode decides: a
        stage that fails open gets a "continue" (logged and counted).
        """
        if not self.policy.handles(event.name):
            return NOT_HANDLED
        stage = event.stage
        request = event.request(
            arguments,
            client=self.client,
            session=session.facts,
            conn_meta=session.conn_meta,
            dry_run=self.config.dry_run,
        )
        began = time.monotonic()
        verdict = await self.policy.evaluate(request, self._timeouts[stage])
        self._seconds[stage].observe(time.monotonic() - began)
        if verdict is not None:
            session.conn_meta.update(verdict.meta_set)
            return verdict
        if stage in self.config.fail_open:
            metrics.POLICY_FAIL_OPEN.labels(stage.value).inc()
            log.warning(
                "no verdict: failing open",
                extra={"session_id": session.id, "event": event.name, "stage": stage.value},
            )
            return pb.Verdict(action=pb.ACTION_CONTINUE)
        metrics.POLICY_UNAVAILABLE.labels(stage.value).inc()
        return None

    def refusal(
        self, session: EdgeSession, event: Event, verdict: pb.Verdict | None
    ) -> Reply | None:
        """The reply a verdict calls for (None: proceed), logged when it refuses."""
        reply = render(verdict, (session.params or self._params).hostname, event.stage)
        if reply is not None:
            log.info(
                "refused",
                extra={
                    "session_id": session.id,
                    "event": event.name,
                    "decision_id": verdict.decision_id if verdict else None,
                    "revision": verdict.revision if verdict else None,
                    "reply": reply.lines,
                    "close": reply.close,
                },
            )
        return reply

    async def decide(self, session: EdgeSession, event: Event, arguments: Any) -> Reply | None:
        return self.refusal(session, event, await self.ask(session, event, arguments))

    # The hooks ------------------------------------------------------------------

    async def shape(self, session: EdgeSession) -> ListenerParams | Reply | None:
        """This connection's listener parameters, when the policy computes them
        (smtp_server_get_dynamic_parameters): over the policy's listener for the
        port, the edge's own flags still first; a refusal is sent instead of
        the banner."""
        event = events.DYNAMIC_PARAMETERS
        if not self.policy.handles(event.name):
            return None
        verdict = await self.ask(session, event, event.arguments(listener=self._listener(session)))
        reply = self.refusal(session, event, verdict)
        if reply is not None or verdict is None or not verdict.HasField("listener"):
            return reply
        listener = pb.Listener()
        static = self.policy.listener(session.facts.local_port)
        if static is not None:
            listener.CopyFrom(static)
        listener.MergeFrom(verdict.listener)
        return params(self.config, listener)[0]

    def _listener(self, session: EdgeSession) -> str:
        """The listener a session came in by, as bound: its address (a wildcard
        stays one, as in KumoMTA) with the port it listens on."""
        port = session.facts.local_port
        tls = self.config.tls_listen
        listen = tls if tls is not None and port == tls.port else self.config.listen
        return str(listen.with_port(port))

    def rewrites(self) -> bool:
        """Whether replies wait for smtp_server_rewrite_response."""
        return self.policy.handles(events.REWRITE_RESPONSE.name)

    async def rewrite(
        self, session: EdgeSession, data: bytes, command: str | None
    ) -> tuple[bytes, bool]:
        """The replies in `data` as the policy rewrote them (each kept when no
        verdict came), and whether one is now a 421, which closes the session."""
        out, close = [], False
        for code, text in parse_replies(data):
            arguments = events.REWRITE_RESPONSE.arguments(
                status=code, response=text, command=command or ""
            )
            reply = rewritten(
                code, text, await self.ask(session, events.REWRITE_RESPONSE, arguments)
            )
            close = close or reply.startswith(b"421")
            out.append(reply)
        return b"".join(out) or data, close

    def offers_auth(self) -> bool:
        """AUTH is offered only where the policy can grant it."""
        return self.policy.handles(events.AUTH_PLAIN.name)

    async def connect(self, session: EdgeSession) -> Reply | None:
        """Before the banner: a reply here replaces the banner and ends the session."""
        return await self.decide(session, events.CONNECT, events.CONNECT.arguments())

    async def ehlo(
        self, session: EdgeSession, domain: str, extensions: list[str]
    ) -> list[str] | Reply:
        """The extensions to announce (the policy may replace them), or a refusal."""
        arguments = events.EHLO.arguments(domain=domain, extensions=extensions)
        verdict = await self.ask(session, events.EHLO, arguments)
        reply = self.refusal(session, events.EHLO, verdict)
        if reply is not None:
            return reply
        assert verdict is not None
        if verdict.HasField("ehlo_extensions"):
            return list(verdict.ehlo_extensions.items)
        return extensions

    async def helo(self, session: EdgeSession, domain: str) -> Reply | None:
        return await self.decide(
            session, events.EHLO, events.EHLO.arguments(domain=domain, helo=True)
        )

    async def auth(
        self, session: EdgeSession, authz: str, authc: str, password: str
    ) -> Reply | None:
        """AUTH PLAIN and LOGIN, decided by the policy's smtp_server_auth_plain. No
        verdict, even on a stage that fails open, ever grants: only the policy's
        `true` (or AuthInfo) does, and then the session takes its identities."""
        arguments = events.AUTH_PLAIN.arguments(authz=authz, authc=authc, password=password)
        verdict = await self.ask(session, events.AUTH_PLAIN, arguments)
        reply = self.refusal(session, events.AUTH_PLAIN, verdict)
        if reply is not None:
            return reply
        if verdict is None or not verdict.auth_granted:
            return AUTH_INVALID
        session.authenticated_as(granted(verdict, authz, authc))
        return None

    async def mail(self, session: EdgeSession, sender: str, params: list[str]) -> Reply | None:
        arguments = events.MAIL_FROM.arguments(sender=sender, params=params)
        reply = await self.decide(session, events.MAIL_FROM, arguments)
        if reply is not None:
            return reply
        return await self.delivery.mail(session, sender, params)

    async def rcpt(
        self, session: EdgeSession, transaction: Transaction, recipient: str, params: list[str]
    ) -> Reply | None:
        arguments = events.RCPT_TO.arguments(
            recipient=recipient, params=params, sender=transaction.sender
        )
        reply = await self.decide(session, events.RCPT_TO, arguments)
        if reply is not None:
            return reply
        return await self.delivery.rcpt(session, recipient)

    async def data(self, session: EdgeSession, transaction: Transaction, data: bytes) -> Reply:
        """The data phase as KumoMTA runs it (policy/reception.py); then every
        message it made is handed to delivery, whose answer is the reply."""

        async def ask(event: Event, arguments: Any) -> pb.Verdict | None:
            return await self.ask(session, event, arguments)

        def trace(message_id: str, recipients: list[str]) -> bytes:
            return self._received(session, message_id, recipients)

        shape = session.params or self._params
        received = await receive(
            ask,
            new_message_id,
            sender=transaction.sender,
            recipients=transaction.recipients,
            data=data,
            handling=shape.batch_handling,
            trace=trace if shape.received_header else None,
        )
        if received.stopped is not None:
            await self.delivery.reset(session)  # the transaction is over
            reply = self.refusal(session, received.stopped, received.verdict)
            assert reply is not None  # a verdict that stops always refuses
            return reply
        if not received.messages:
            await self.delivery.reset(session)
            return NO_BATCH
        return await self.delivery.deliver(session, received.messages)

    def _received(self, session: EdgeSession, message_id: str, recipients: list[str]) -> bytes:
        facts = session.facts
        return received_header(
            ehlo=facts.ehlo_domain,
            peer_ip=facts.peer_ip,
            hostname=(session.params or self._params).hostname,
            protocol=protocol(session.esmtp, facts.HasField("tls"), facts.HasField("auth")),
            message_id=message_id,
            recipients=recipients,
            when=datetime.now(UTC),
        )

    async def reset(self, session: EdgeSession) -> None:
        await self.delivery.reset(session)

    async def session_ended(self, session: EdgeSession) -> None:
        await self.delivery.reset(session)
