"""Where accepted mail goes: a Maildir (the default), or an upstream MTA.

Both answer the same questions at the same points of the transaction: may the
transaction start (MAIL), may this recipient be added (RCPT), and finally the
reply to DATA, given only once every message the transaction was split into
is safe (fsynced into new/, or accepted by the upstream): `250 OK ids=ID…`.
A refusal from the upstream is passed back to the client as the upstream
worded it; an upstream that cannot be reached, or stops answering, gets
`451 4.4.1`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Protocol

from policy.reception import Message
from smtpedge import metrics
from smtpedge.maildir import Maildir
from smtpedge.relay import Relay, Upstream, UpstreamError, UpstreamReply
from smtpedge.replies import Reply
from smtpedge.session import EdgeSession
from smtpedge.trace import envelope_headers

log = logging.getLogger("smtpedge.delivery")


class Delivery(Protocol):
    async def mail(self, session: EdgeSession, sender: str, params: list[str]) -> Reply | None: ...
    async def rcpt(self, session: EdgeSession, recipient: str) -> Reply | None: ...
    async def deliver(self, session: EdgeSession, messages: list[Message]) -> Reply: ...
    async def reset(self, session: EdgeSession) -> None: ...
    async def close(self) -> None: ...


def accepted(messages: list[Message], sizes: list[int]) -> Reply:
    """The reply once every message is safe: their ids, as KumoMTA words it."""
    metrics.MESSAGES_ACCEPTED.inc(len(messages))
    metrics.MESSAGE_BYTES.inc(sum(sizes))
    return Reply(("250 OK ids=" + " ".join(m.message_id for m in messages),))


class MaildirDelivery:
    """One file per accepted message, its envelope in its first header lines."""

    def __init__(self, maildir: Maildir, hostname: str) -> None:
        self.maildir, self.hostname = maildir, hostname

    async def mail(self, session: EdgeSession, sender: str, params: list[str]) -> Reply | None:
        return None

    async def rcpt(self, session: EdgeSession, recipient: str) -> Reply | None:
        return None

    async def deliver(self, session: EdgeSession, messages: list[Message]) -> Reply:
        stored = [
            (envelope_headers(m.sender, m.recipients) + m.data, m.message_id) for m in messages
        ]
        loop = asyncio.get_running_loop()
        try:
            names = await loop.run_in_executor(None, self.maildir.deliver, stored)
        except OSError:
            log.exception("cannot store message", extra={"session_id": session.id})
            text = f"451 4.3.0 {self.hostname} cannot store the message now, try again later"
            return Reply((text,))
        for message, name, (data, _) in zip(messages, names, stored, strict=True):
            log.info(
                "accepted",
                extra={
                    "session_id": session.id,
                    "message_id": message.message_id,
                    "file": name,
                    "recipients": len(message.recipients),
                    "bytes": len(data),
                },
            )
        return accepted(messages, [len(data) for data, _ in stored])

    async def reset(self, session: EdgeSession) -> None:
        return None

    async def close(self) -> None:
        return None


def _passed_back(reply: UpstreamReply) -> Reply:
    return Reply(reply.reply_lines())


# What MAIL FROM parameters need the upstream to have announced.
PARAMETERS = {"SIZE": "SIZE", "BODY": "8BITMIME", "SMTPUTF8": "SMTPUTF8"}


@dataclass
class _Upstreamed:
    """A client transaction's counterpart upstream: its connection, the MAIL FROM
    parameters it was opened with, and the recipients the upstream accepted
    (LMTP answers DATA once for each)."""

    upstream: Upstream
    sender: str
    params: list[str]
    recipients: list[str] = field(default_factory=list)


class RelayDelivery:
    """Relays each transaction to the upstream while the client's transaction runs.

    The upstream side of each session's transaction in progress is kept here,
    by session id; whenever it goes wrong the connection is closed (and the
    client hears 451), so none is ever dropped open. A transaction the policy
    left as one message of the same envelope is relayed as it ran; one split
    into several, or given another sender or recipients, is relayed as one
    upstream transaction per message, the open one reset. Should one of those
    fail after others were relayed, the client hears the failure and its retry
    duplicates the ones before: never a loss.
    """

    def __init__(self, relay: Relay, hostname: str) -> None:
        self.relay, self.hostname = relay, hostname
        self._open: dict[str, _Upstreamed] = {}

    def _unavailable(self, session: EdgeSession, error: Exception) -> Reply:
        log.warning(
            "upstream unavailable",
            extra={
                "session_id": session.id,
                "upstream": str(self.relay.target),
                "error": str(error),
            },
        )
        return Reply((f"451 4.4.1 {self.hostname} upstream not available, try again later",))

    async def _begin(
        self, session: EdgeSession, sender: str, params: list[str]
    ) -> _Upstreamed | Reply:
        """MAIL FROM upstream, passing on the parameters the upstream announced."""
        for _attempt in range(2):  # a pooled connection may have gone stale: one fresh retry
            try:
                upstream, reused = await self.relay.acquire()
            except UpstreamError as e:
                return self._unavailable(session, e)
            wanted = [p for p in params if PARAMETERS.get(p.split("=")[0]) in upstream.extensions]
            try:
                reply = await upstream.command(" ".join([f"MAIL FROM:<{sender}>", *wanted]))
            except UpstreamError as e:
                await upstream.close()
                if reused:
                    continue
                return self._unavailable(session, e)
            if not reply.ok:
                await self.relay.release(upstream, clean=True)
                return _passed_back(reply)
            return _Upstreamed(upstream, sender, params)
        return self._unavailable(session, UpstreamError("no working connection"))

    @staticmethod
    async def _add(state: _Upstreamed, recipient: str) -> Reply | None:
        """RCPT TO upstream (UpstreamError when the connection fails)."""
        reply = await state.upstream.command(f"RCPT TO:<{recipient}>")
        if not reply.ok:
            return _passed_back(reply)
        state.recipients.append(recipient)
        return None

    async def _send(
        self, session: EdgeSession, state: _Upstreamed, message: Message
    ) -> Reply | None:
        """DATA upstream, then the connection back to the pool; None when the
        upstream took the message for every recipient."""
        try:
            replies = await state.upstream.data(message.data, len(state.recipients))
        except UpstreamError as e:
            await state.upstream.close()
            return self._unavailable(session, e)
        except BaseException:  # cancelled (the edge is stopping): the upstream is mid-DATA
            state.upstream.abort()
            raise
        await self.relay.release(state.upstream, clean=True)
        refused = [r for r in replies if not r.ok]
        log.info(
            "relayed" if not refused else "refused upstream",
            extra={
                "session_id": session.id,
                "message_id": message.message_id,
                "upstream": str(self.relay.target),
                "upstream_replies": [" ".join((str(r.code), *r.lines)) for r in replies],
                "recipients": len(message.recipients),
                "bytes": len(message.data),
            },
        )
        return _passed_back(refused[0]) if refused else None  # LMTP: every recipient, or none

    async def mail(self, session: EdgeSession, sender: str, params: list[str]) -> Reply | None:
        await self.reset(session)
        state = await self._begin(session, sender, params)
        if isinstance(state, Reply):
            return state
        self._open[session.id] = state
        return None

    async def rcpt(self, session: EdgeSession, recipient: str) -> Reply | None:
        state = self._open.get(session.id)
        if state is None:
            return self._unavailable(session, UpstreamError("the upstream transaction was lost"))
        try:
            return await self._add(state, recipient)
        except UpstreamError as e:
            del self._open[session.id]
            await state.upstream.close()
            return self._unavailable(session, e)

    async def deliver(self, session: EdgeSession, messages: list[Message]) -> Reply:
        state = self._open.get(session.id)
        if state is None:
            return self._unavailable(session, UpstreamError("the upstream transaction was lost"))
        (first, *more) = messages
        if not more and (first.sender, first.recipients) == (state.sender, state.recipients):
            del self._open[session.id]
            reply = await self._send(session, state, first)
        else:
            await self.reset(session)
            reply = await self._each(session, state.params, messages)
        return reply or accepted(messages, [len(m.data) for m in messages])

    async def _each(
        self, session: EdgeSession, params: list[str], messages: list[Message]
    ) -> Reply | None:
        """One upstream transaction per message; the first failure is the answer."""
        for done, message in enumerate(messages):
            reply = await self._relay_one(session, params, message)
            if reply is not None:
                if done:
                    log.warning(
                        "partly relayed",
                        extra={
                            "session_id": session.id,
                            "relayed": [m.message_id for m in messages[:done]],
                            "message_id": message.message_id,
                        },
                    )
                return reply
        return None

    async def _relay_one(
        self, session: EdgeSession, params: list[str], message: Message
    ) -> Reply | None:
        state = await self._begin(session, message.sender, params)
        if isinstance(state, Reply):
            return state
        for recipient in message.recipients:
            try:
                reply = await self._add(state, recipient)
            except UpstreamError as e:
                await state.upstream.close()
                return self._unavailable(session, e)
            if reply is not None:
                await self._release(state)
                return reply
        return await self._send(session, state, message)

    async def reset(self, session: EdgeSession) -> None:
        """The client's transaction is over: RSET upstream, and back to the pool."""
        state = self._open.pop(session.id, None)
        if state is not None:
            await self._release(state)

    async def _release(self, state: _Upstreamed) -> None:
        try:
            reply = await state.upstream.command("RSET")
            await self.relay.release(state.upstream, clean=reply.ok)
        except UpstreamError:
            await self.relay.release(state.upstream, clean=False)

    async def close(self) -> None:
        states, self._open = list(self._open.values()), {}
        for state in states:
            await state.upstream.close()
        await self.relay.close()
