"""An SMTP/LMTP client for handing transactions to an upstream MTA as they happen.

`Relay` keeps a small pool of upstream connections; a session takes one for
its transaction (MAIL → RCPT... → DATA) and gives it back when the transaction
ends, so connections are reused between transactions (never shared by two at
once). Anything that goes wrong on the way (connecting, TLS, a timeout, a
connection closed in the middle, a reply that is not SMTP) raises
UpstreamError, and the connection it happened on is closed first, so none is
left open behind an error; the caller answers `451 4.4.1` and nothing is
acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from dataclasses import dataclass

from smtpedge.config import RelayTarget

log = logging.getLogger("smtpedge.relay")

_REPLY_LINE = re.compile(rb"^(\d{3})([ -])(.*)$", re.S)


class UpstreamError(Exception):
    """The upstream could not be reached or stopped answering properly."""


@dataclass(frozen=True)
class UpstreamReply:
    code: int
    lines: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.code < 400

    def reply_lines(self) -> tuple[str, ...]:
        *init, last = self.lines or ("",)
        return (*(f"{self.code}-{line}" for line in init), f"{self.code} {last}")


_LINE_END = re.compile(rb"\r\n|\r|\n")


def dot_stuff(message: bytes) -> bytes:
    """The message as it goes after DATA: every line ended by CRLF (a bare CR or LF
    too, which RFC 5321 forbids, so no upstream can read one as the end of a line
    and be smuggled a second message), leading dots doubled, ended by CRLF . CRLF."""
    message = _LINE_END.sub(b"\r\n", message)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    if message.startswith(b"."):
        message = b"." + message
    return message.replace(b"\r\n.", b"\r\n..") + b".\r\n"


class Upstream:
    """One connection to the upstream MTA."""

    def __init__(self, target: RelayTarget, hostname: str, timeout: float) -> None:
        self.target, self.hostname, self.timeout = target, hostname, timeout
        self.extensions: set[str] = set()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        target = self.target
        try:
            async with asyncio.timeout(self.timeout):
                self._reader, self._writer = await asyncio.open_connection(target.host, target.port)
                await self._expect(await self._read_reply(), "greeting")
                await self._greet()
                if target.starttls != "no":
                    if "STARTTLS" in self.extensions:
                        await self._expect(await self.command("STARTTLS"), "STARTTLS")
                        await self._writer.start_tls(self._tls(), server_hostname=target.host)
                        await self._greet()
                    elif target.starttls == "require":
                        raise UpstreamError(f"{target} does not offer STARTTLS")
        except UpstreamError:
            await self.close()
            raise
        except (OSError, ssl.SSLError, TimeoutError) as e:
            await self.close()
            raise UpstreamError(f"{target}: {type(e).__name__}: {e}") from e

    def _tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.target.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def _greet(self) -> None:
        verb = "LHLO" if self.target.lmtp else "EHLO"
        reply = await self._expect(await self.command(f"{verb} {self.hostname}"), verb)
        self.extensions = {line.split(" ", 1)[0].upper() for line in reply.lines[1:]}

    async def _expect(self, reply: UpstreamReply, what: str) -> UpstreamReply:
        if not reply.ok:
            raise UpstreamError(
                f"{self.target} refused {what}: {reply.code} {' '.join(reply.lines)}"
            )
        return reply

    async def _read_reply(self) -> UpstreamReply:
        assert self._reader is not None
        code, lines = 0, []
        while True:
            try:
                raw = await self._reader.readline()
            except ValueError:  # longer than the reader's limit
                raise UpstreamError(f"{self.target} sent an overlong reply line") from None
            if not raw.endswith(b"\n"):
                raise UpstreamError(f"{self.target} closed the connection")
            match = _REPLY_LINE.match(raw.rstrip(b"\r\n"))
            if match is None:
                raise UpstreamError(f"{self.target} sent a malformed reply: {raw[:100]!r}")
            code = int(match.group(1))
            lines.append(match.group(3).decode("utf-8", errors="replace"))
            if match.group(2) == b" ":
                return UpstreamReply(code, tuple(lines))

    async def command(self, line: str) -> UpstreamReply:
        return await self._send(line.encode("utf-8") + b"\r\n", replies=1)

    async def _send(self, data: bytes, replies: int) -> UpstreamReply:
        out = await self._send_many(data, replies)
        return out[-1]

    async def _send_many(self, data: bytes, replies: int) -> list[UpstreamReply]:
        if self._writer is None:
            raise UpstreamError(f"{self.target}: not connected")
        try:
            async with asyncio.timeout(self.timeout):
                self._writer.write(data)
                await self._writer.drain()
                return [await self._read_reply() for _ in range(replies)]
        except UpstreamError:
            await self.close()
            raise
        except (OSError, TimeoutError) as e:
            await self.close()
            raise UpstreamError(f"{self.target}: {type(e).__name__}: {e}") from e

    async def data(self, message: bytes, recipients: int) -> list[UpstreamReply]:
        """DATA and the message: one reply (SMTP) or one per recipient (LMTP)."""
        start = await self.command("DATA")
        if start.code != 354:
            await self._abandon()
            return [start]
        return await self._send_many(dot_stuff(message), recipients if self.target.lmtp else 1)

    async def _abandon(self) -> None:
        """Ends the transaction still open upstream (RSET), or the connection."""
        try:
            if (await self.command("RSET")).ok:
                return
        except UpstreamError:
            return  # closed already
        await self.close()

    @property
    def open(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def abort(self) -> None:
        """Drops the connection at once (no await: for a transaction cut short)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.transport.abort()


class Relay:
    """A pool of upstream connections, one transaction at a time on each."""

    def __init__(self, target: RelayTarget, hostname: str, timeout: float, pool: int) -> None:
        self.target, self.hostname, self.timeout, self.pool = target, hostname, timeout, pool
        self._idle: list[Upstream] = []

    async def acquire(self) -> tuple[Upstream, bool]:
        """A ready connection, and whether it was reused (then it may have gone stale)."""
        while self._idle:
            upstream = self._idle.pop()
            if upstream.open:
                return upstream, True
        upstream = Upstream(self.target, self.hostname, self.timeout)
        await upstream.connect()
        return upstream, False

    async def release(self, upstream: Upstream, clean: bool) -> None:
        """Back to the pool when it ended a transaction cleanly, else closed."""
        if clean and upstream.open and len(self._idle) < self.pool:
            self._idle.append(upstream)
        else:
            await upstream.close()

    async def close(self) -> None:
        for upstream in self._idle:
            with contextlib.suppress(Exception):
                await upstream.command("QUIT")
            await upstream.close()
        self._idle.clear()
