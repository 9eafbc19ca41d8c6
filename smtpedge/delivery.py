"""Where accepted mail goes: a Maildir (the default), or an upstream MTA.

Both answer the same questions at the same points of the transaction: may the
transaction start (MAIL), may this recipient be added (RCPT), and finally the
reply to DATA, given only once the message is safe (fsynced into new/, or
accepted by the upstream). A refusal from the upstream is passed back to the
client as the upstream worded it; an upstream that cannot be reached, or
stops answering, gets `451 4.4.1`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

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
    async def deliver(
        self, session: EdgeSession, sender: str, recipients: list[str], data: bytes, message_id: str
    ) -> Reply: ...
    async def reset(self, session: EdgeSession) -> None: ...
    async def close(self) -> None: ...


def accepted(message_id: str, size: int) -> Reply:
    metrics.MESSAGES_ACCEPTED.inc()
    metrics.MESSAGE_BYTES.inc(size)
    return Reply((f"250 OK id={message_id}",))


class MaildirDelivery:
    """One file per accepted transaction, its envelope in its first header lines."""

    def __init__(self, maildir: Maildir, hostname: str) -> None:
        self.maildir, self.hostname = maildir, hostname

    async def mail(self, session: EdgeSession, sender: str, params: list[str]) -> Reply | None:
        return None

    async def rcpt(self, session: EdgeSession, recipient: str) -> Reply | None:
        return None

    async def deliver(
        self, session: EdgeSession, sender: str, recipients: list[str], data: bytes, message_id: str
    ) -> Reply:
        stored = envelope_headers(sender, recipients) + data
        loop = asyncio.get_running_loop()
        try:
            name = await loop.run_in_executor(None, self.maildir.deliver, stored, message_id)
        except OSError:
            log.exception("cannot store message", extra={"session_id": session.id})
            text = f"451 4.3.0 {self.hostname} cannot store the message now, try again later"
            return Reply((text,))
        log.info(
            "accepted",
            extra={
                "session_id": session.id,
                "message_id": message_id,
                "file": name,
                "recipients": len(recipients),
                "bytes": len(stored),
            },
        )
        return accepted(message_id, len(stored))

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
    """A client transaction's counterpart upstream: its connection, and how many
    recipients the upstream accepted (LMTP answers DATA once for each)."""

    upstream: Upstream
    recipients: int = 0


class RelayDelivery:
    """Relays each transaction to the upstream while the client's transaction runs.

    The upstream side of each session's transaction in progress is kept here,
    by session id; whenever it goes wrong the connection is closed (and the
    client hears 451), so none is ever dropped open.
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

    async def mail(self, session: EdgeSession, sender: str, params: list[str]) -> Reply | None:
        await self.reset(session)
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
            self._open[session.id] = _Upstreamed(upstream)
            return None
        return self._unavailable(session, UpstreamError("no working connection"))

    async def rcpt(self, session: EdgeSession, recipient: str) -> Reply | None:
        state = self._open.get(session.id)
        if state is None:
            return self._unavailable(session, UpstreamError("the upstream transaction was lost"))
        try:
            reply = await state.upstream.command(f"RCPT TO:<{recipient}>")
        except UpstreamError as e:
            await self._drop(session)
            return self._unavailable(session, e)
        if not reply.ok:
            return _passed_back(reply)
        state.recipients += 1
        return None

    async def deliver(
        self, session: EdgeSession, sender: str, recipients: list[str], data: bytes, message_id: str
    ) -> Reply:
        state = self._open.pop(session.id, None)
        if state is None:
            return self._unavailable(session, UpstreamError("the upstream transaction was lost"))
        try:
            replies = await state.upstream.data(data, state.recipients)
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
                "message_id": message_id,
                "upstream": str(self.relay.target),
                "upstream_replies": [" ".join((str(r.code), *r.lines)) for r in replies],
                "recipients": len(recipients),
                "bytes": len(data),
            },
        )
        if refused:  # LMTP: acknowledged only when every recipient is
            return _passed_back(refused[0])
        return accepted(message_id, len(data))

    async def reset(self, session: EdgeSession) -> None:
        """The client's transaction is over: RSET upstream, and back to the pool."""
        state = self._open.pop(session.id, None)
        if state is None:
            return
        try:
            reply = await state.upstream.command("RSET")
            await self.relay.release(state.upstream, clean=reply.ok)
        except UpstreamError:
            await self.relay.release(state.upstream, clean=False)

    async def _drop(self, session: EdgeSession) -> None:
        state = self._open.pop(session.id, None)
        if state is not None:
            await state.upstream.close()

    async def close(self) -> None:
        states, self._open = list(self._open.values()), {}
        for state in states:
            await state.upstream.close()
        await self.relay.close()
