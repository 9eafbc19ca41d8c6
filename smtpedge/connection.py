"""One client connection: bytes in, command lines and message data out, replies back.

An asyncio Protocol with its own buffer (no StreamReader, so a line already
received costs no task switch and one copy). It knows SMTP's framing, not its
commands:
- a command line ends at LF (CRLF, or a bare LF as some clients send); one
  longer than its limit is read to its end, dropped and reported as None;
- message data ends only at CRLF . CRLF (a bare LF never ends it, so nothing
  can be smuggled past the end of a message); leading dots are removed (RFC
  5321 section 4.5.2); a message over the size limit is read to its end and
  reported, nothing of it kept;
- replies are collected and go out in one write when the session next waits
  for the client, so answers to pipelined commands travel together (RFC 2920);
- STARTTLS is `loop.start_tls` on the same socket; whatever the client sent
  in the clear after the STARTTLS line is discarded (CVE-2011-0411);
- the idle clock: the session calls `active()` when it has answered a valid
  command, and message data restarts it as it arrives; a client that is waited
  for longer than the idle timeout since then gets `timed_out` (set by the
  session) called.
The session runs as one task per connection; a closed connection makes its
next read raise Closed.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from enum import Enum
from typing import cast

# Stop reading from a client with this much unread input (it is pipelining far
# ahead of the answers), until the session has caught up.
HIGH_WATER = 256 * 1024
# RFC 5321 section 4.5.3.1.6: a text line is at most 1000 octets with its CRLF,
# not counting a dot doubled for transparency: 1001 as received.
MAX_DATA_LINE = 1001
_END = b"\r\n.\r\n"


class Closed(Exception):
    """The connection is closed: the client left, or the session ended it."""


class DataProblem(Enum):
    TOO_BIG = "the message is larger than the size limit"
    LINE_TOO_LONG = "a line of the message is longer than RFC 5321 allows"


def unstuff(raw: bytes) -> bytes:
    """Message data as received (up to and with the CRLF before the final dot)
    without the dots doubled for transparency (RFC 5321 section 4.5.2)."""
    if raw.startswith(b"."):
        raw = raw[1:]
    return raw.replace(b"\r\n.", b"\r\n")


def lines_fit(raw: bytes, limit: int = MAX_DATA_LINE) -> bool:
    """Whether every line of `raw` (counted to its LF) is at most `limit` octets."""
    return len(raw) <= limit or max(map(len, raw.split(b"\n"))) < limit


class Connection(asyncio.Protocol):
    """`opened(connection)` runs when the client connects; it returns False to
    refuse (having written why), True once it has started the session."""

    def __init__(self, opened: Callable[[Connection], bool], idle_timeout: float) -> None:
        self._opened = opened
        self._loop = asyncio.get_running_loop()
        self.transport = cast(asyncio.Transport, None)  # set in connection_made
        self.secure = False  # TLS: a TLS listener, or STARTTLS done
        self.awaiting_command = False  # suspended until the client sends a command line
        self.closed = False
        self.timed_out: Callable[[], None] = self.close
        self._buffer = bytearray()
        self._out: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None
        self._waiting = False  # for the client: to send more, or to read our replies
        self._drained: asyncio.Future[None] | None = None
        self._eof = False
        self._reading_paused = False
        self._idle_timeout = idle_timeout
        self._active = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # asyncio's side ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.secure = transport.get_extra_info("ssl_object") is not None
        self._active = self._loop.time()
        self._timer = self._loop.call_at(self._active + self._idle_timeout, self._check_idle)
        if not self._opened(self):
            self.close()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is not None:
            self._wake()
        elif len(self._buffer) > HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return not self.secure  # keep a plain socket open to answer what came before

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended()

    def pause_writing(self) -> None:
        self._drained = self._loop.create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    # The session's side --------------------------------------------------------

    def peer(self) -> tuple[str, int]:
        peer = self.transport.get_extra_info("peername") or ("", 0)
        return peer[0], peer[1]

    def local(self) -> tuple[str, int]:
        local = self.transport.get_extra_info("sockname") or ("", 0)
        return local[0], local[1]

    def active(self) -> None:
        """The client did something that counts: the idle clock starts over."""
        self._active = self._loop.time()

    def write(self, data: bytes) -> None:
        if not self.closed:
            self._out.append(data)

    def flush(self) -> None:
        out = self._out
        if out and not self.closed:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    def close(self) -> None:
        """Sends what is written, then closes; nothing more is read."""
        if not self.closed:
            self.flush()
            self.transport.close()
            self._ended()

    def abort(self) -> None:
        self.transport.abort()
        self._ended()

    async def read_command(self, limit: int) -> bytes | None:
        """The next command line (see read_line), marked as a wait for the client
        while it waits, so a stopping server can tell it at once."""
        self.awaiting_command = True
        try:
            return await self.read_line(limit)
        finally:
            self.awaiting_command = False

    async def read_line(self, limit: int) -> bytes | None:
        """The next line without its line ending (LF, and any CRs before it); None
        when it was longer than `limit` octets (it was read to its end and dropped)."""
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n")
            if end >= 0:
                if end >= limit:
                    del buffer[: end + 1]
                    return None
                stop = end
                while stop and buffer[stop - 1] == 13:  # CR
                    stop -= 1
                line = bytes(buffer[:stop])
                del buffer[: end + 1]
                return line
            if len(buffer) >= limit:
                del buffer[:]
                while (end := buffer.find(b"\n")) < 0:
                    del buffer[:]
                    await self._more()
                del buffer[: end + 1]
                return None
            await self._more()

    async def read_data(self, size_limit: int) -> bytes | DataProblem:
        """A message after DATA's 354, up to CRLF . CRLF, without the dot-stuffing;
        or what was wrong with it (read to its end all the same, nothing kept).
        `size_limit` 0: no limit."""
        buffer = self._buffer
        while len(buffer) < 3 and b".\r\n".startswith(buffer):
            await self._more()
        if buffer.startswith(b".\r\n"):  # an empty message
            del buffer[:3]
            return b""
        parts: list[bytes] = []
        size = 0  # bytes moved from the buffer into parts (or dropped)
        too_big = False
        while (end := buffer.find(_END)) < 0:
            # Keep the last 4 bytes: they may begin the end marker.
            if len(buffer) > 4:
                cut = len(buffer) - 4
                size += cut
                if not too_big:
                    parts.append(bytes(buffer[:cut]))
                    if size_limit and size > size_limit:
                        too_big = True
                        parts.clear()
                del buffer[:cut]
            await self._more()
            self.active()  # a data block arrived (RFC 5321 4.5.3.2.5)
        size += end + 2
        if too_big or (size_limit and size > size_limit):
            del buffer[: end + 5]
            return DataProblem.TOO_BIG
        parts.append(bytes(buffer[: end + 2]))
        del buffer[: end + 5]
        raw = parts[0] if len(parts) == 1 else b"".join(parts)
        if not lines_fit(raw):
            return DataProblem.LINE_TOO_LONG
        return unstuff(raw)

    async def start_tls(self, context: ssl.SSLContext, timeout: float) -> None:
        """TLS on this connection (after the 220 to STARTTLS has been written).
        On failure the connection is closed and the handshake's error raised."""
        self.flush()
        del self._buffer[:]  # sent in the clear after STARTTLS: never a command
        self._reading_paused = False  # start_tls pauses and resumes reading itself
        try:
            transport = await self._loop.start_tls(
                self.transport, self, context, server_side=True, ssl_handshake_timeout=timeout
            )
        except BaseException:
            # The TLS layer does not report the loss of a connection it never set up.
            self._ended()
            raise
        if transport is None:  # the connection went away meanwhile
            self._ended()
            raise Closed
        self.transport = transport
        self.secure = True

    # Inside ----------------------------------------------------------------

    async def _more(self) -> None:
        """Waits until more bytes arrive; Closed when none will."""
        if self.closed or self._eof:
            raise Closed
        self.flush()
        self._waiting = True
        try:
            if self._drained is not None:  # the client is not reading its replies
                await self._drained
            if self._reading_paused:
                self._reading_paused = False
                self.transport.resume_reading()
            waiter = self._waiter = self._loop.create_future()
            await waiter
        finally:
            self._waiting = False
            self._waiter = None
        if self.closed:
            raise Closed

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _ended(self) -> None:
        self.closed = True
        self._out.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake()
        self.resume_writing()

    def _check_idle(self) -> None:
        self._timer = None
        if self.closed:
            return
        now = self._loop.time()
        due = self._active + self._idle_timeout
        if now >= due and not self._waiting:
            # The session is busy (asking the policy, say): the client is not idle.
            self._active = now
            due = now + self._idle_timeout
        if now < due:
            self._timer = self._loop.call_at(due, self._check_idle)
            return
        self.timed_out()
