"""The SMTP protocol: aiosmtpd's command parsing, with the edge's session rules.

aiosmtpd parses commands and calls the handler's hooks. This subclass owns
what happens around them: the policy is asked before the banner; a reply can
close the session, in which case its bytes are flushed and nothing the client
pipelined after it is read; idle clients and a stopping server get a 421.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from functools import cache
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, TLSSetupException, _AuthMechAttr, login_always_fail

from smtpedge import metrics
from smtpedge.handler import PolicyHandler
from smtpedge.replies import Reply
from smtpedge.session import EdgeSession

log = logging.getLogger("smtpedge.session")

# aiosmtpd's own replies that the edge words with enhanced status codes.
CANNED = {
    "552 Error: Too much mail data": "552 5.3.4 Error: message too big",
    "552 Error: message size exceeds fixed maximum message size": (
        "552 5.3.4 Error: message size exceeds fixed maximum message size"
    ),
}
_CONTROL = bytes(range(32)).replace(b"\t", b"")
_NEED_TLS = frozenset({"MAIL", "RCPT", "DATA"})  # with --require-tls

# <local@domain>, dot-atoms in ASCII, then parameters: the address as aiosmtpd's
# parser would return it. Anything else (quoted or UTF-8 local parts, source
# routes, no brackets) goes to aiosmtpd's full parser.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_ADDRESS = re.compile(
    rf"\s*<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(?:\s+(.*))?\Z", re.S
)


@cache
def _functions(cls: type, prefix: str) -> dict[str, Any]:
    """The class's `smtp_*` / `auth_*` functions by command or mechanism name."""
    return {
        name[len(prefix) :].replace("__", "-"): getattr(cls, name)
        for name in dir(cls)
        if name.startswith(prefix)
    }


class EdgeSMTP(SMTP):
    event_handler: PolicyHandler
    session: EdgeSession

    def __init__(
        self,
        handler: PolicyHandler,
        *,
        sessions: set[EdgeSMTP],
        max_connections: int,
        loop: asyncio.AbstractEventLoop,
        hostname: str,
        ident: str,
        data_size_limit: int,
        timeout: float,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        require_tls: bool = False,
    ) -> None:
        # aiosmtpd's SMTP.__init__, without the introspection it repeats for
        # every connection (method and hook tables depend only on the classes
        # and the one handler): that was a fifth of the edge's CPU.
        self.loop = loop
        asyncio.StreamReaderProtocol.__init__(
            self,
            asyncio.StreamReader(loop=loop, limit=self.line_length_limit),
            client_connected_cb=self._cb_client_connected,
            loop=loop,
        )
        self.__ident__ = ident
        self.event_handler = handler
        self.data_size_limit = data_size_limit
        self.enable_SMTPUTF8 = True
        self._decode_data = False
        self.hostname = hostname
        self.tls_context = None if implicit_tls else tls_context  # what STARTTLS uses
        self.require_starttls = False  # the edge's own check below: 530 5.7.0
        self._require_tls = require_tls and not implicit_tls
        self._timeout_duration = timeout
        self._timeout_handle: asyncio.TimerHandle | None = None
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None  # type: ignore[assignment]
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        self._auth_require_tls = not implicit_tls  # AUTH only over TLS
        self._proxy_timeout = None
        self._authenticator = None
        self._auth_callback = login_always_fail
        self._auth_required = False
        self._handle_hooks = handler.hooks
        self._ehlo_hook_ver = "new"
        self._enforce_call_limit = False
        self._commands = _functions(type(self), "smtp_")
        self._sessions = sessions
        self._max_connections = max_connections
        self._refused = False  # over the connection limit: never became a session
        self._lost = False  # connection_lost has run
        self._closing = False  # a reply closed the session: read nothing more
        self._idle = False  # waiting for the client's next command
        self._draining = False  # the server is stopping

    # Connection lifecycle ---------------------------------------------------

    def _create_session(self) -> EdgeSession:
        if self.session is not None:  # after STARTTLS: the same session, secured
            return self.session.renewed()
        return EdgeSession(self.loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is not None:  # STARTTLS done: the TLS transport replaces the plain one
            super().connection_made(transport)
            self.session.secured(transport)
            log.info("tls", extra={**self._log_fields(), "tls": self.session.facts.tls.cipher})
            return
        if len(self._sessions) >= self._max_connections:
            self._refused = True
            metrics.CONNECTIONS_REFUSED.labels("max_connections").inc()
            transport.write(f"421 4.3.2 {self.hostname} too many connections\r\n".encode())  # type: ignore[attr-defined]
            transport.close()
            return
        super().connection_made(transport)
        self.session.bind(transport)
        self.session.secured(transport)  # a TLS listener
        self._sessions.add(self)
        metrics.SESSIONS.inc()
        metrics.SESSIONS_OPEN.inc()
        log.debug("session opened", extra=self._log_fields())

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused or self._lost:
            return
        self._lost = True
        self._sessions.discard(self)
        metrics.SESSIONS_OPEN.dec()
        log.debug("session closed", extra=self._log_fields())
        self.loop.create_task(self.event_handler.session_ended(self.session))
        super().connection_lost(error)

    def _log_fields(self) -> dict[str, Any]:
        facts = self.session.facts
        return {"session_id": self.session.id, "peer": f"{facts.peer_ip}:{facts.peer_port}"}

    def _write_and_close(self, line: str) -> None:
        """Sends a last line and closes, from outside the command loop."""
        if self._closing or self.transport is None:
            return
        self._writer.write(line.encode() + b"\r\n")
        self._close()

    def _close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()  # flushes what was written, then closes

    def _timeout_cb(self) -> None:
        log.info("idle timeout", extra=self._log_fields())
        self._write_and_close(f"421 4.4.2 {self.hostname} idle too long")

    def shut_down(self) -> None:
        """Server stop: an idle session is told now, a busy one after its command."""
        self._draining = True
        if self._idle:
            self._write_and_close(f"421 4.3.2 {self.hostname} service shutting down")

    # aiosmtpd reads these tables of bound methods (HELP, EHLO, AUTH); built on use.
    @property
    def _smtp_methods(self) -> dict[str, Any]:
        return {name: f.__get__(self) for name, f in self._commands.items()}

    @property
    def _auth_methods(self) -> dict[str, _AuthMechAttr]:
        functions = _functions(type(self), "auth_")
        return {name: _AuthMechAttr(f.__get__(self), True) for name, f in functions.items()}

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        match = _SIMPLE_ADDRESS.match(arg)
        if match is not None:
            return match.group(1), match.group(2) or ""
        return SMTP._getaddr(self, arg)

    # Replies -----------------------------------------------------------------

    async def push(self, status: AnyStr | Reply) -> None:
        if isinstance(status, Reply):
            data = status.encode()
        else:
            if isinstance(status, str):
                status = CANNED.get(status, status).encode()
            data = status + b"\r\n"
        self._writer.write(data)
        counter = metrics.REPLY_CLASS.get(chr(data[0]))
        if counter is not None:
            counter.inc()
        log.debug("reply", extra={**self._log_fields(), "reply": data.decode(errors="replace")})
        await self._writer.drain()
        if isinstance(status, Reply) and status.close:
            self._close()

    # The command loop --------------------------------------------------------

    async def _handle_client(self) -> None:
        try:
            reply = await self.event_handler.handle_connect(self, self.session)
            await self.push(reply or f"220 {self.hostname} {self.__ident__}")
            while not self._closing:
                if self._draining:
                    self._write_and_close(f"421 4.3.2 {self.hostname} service shutting down")
                    return
                line = await self._read_command()
                if line is None:
                    await self.push("500 5.5.2 Command line too long")
                else:
                    await self._dispatch(line)
        except asyncio.IncompleteReadError:
            pass  # the client went away
        except asyncio.CancelledError:
            self._writer.close()
            raise
        except ConnectionError:
            self._writer.close()

    async def _read_command(self) -> bytes | None:
        """The next command line, or None when it was too long (and was discarded)."""
        self._idle = True
        try:
            return await self._reader.readuntil()
        except asyncio.LimitOverrunError as e:
            consumed = e.consumed
            while True:
                await self._reader.readexactly(consumed)
                try:
                    await self._reader.readuntil()
                    return None
                except asyncio.LimitOverrunError as more:
                    consumed = more.consumed
        finally:
            self._idle = False

    async def _dispatch(self, line: bytes) -> None:
        line = line.rstrip(b"\r\n")
        if line.translate(None, _CONTROL) != line:
            await self.push("500 5.5.2 Syntax error: control characters in command")
            return
        command_bytes, _, arg_bytes = line.partition(b" ")
        try:
            command = command_bytes.decode("ascii").upper()
            arg = arg_bytes.strip().decode("utf-8") or None
        except UnicodeDecodeError:
            await self.push("500 5.5.2 Syntax error: command is not valid UTF-8")
            return
        if not command:
            await self.push("500 5.5.2 Syntax error: empty command")
            return
        method = self._commands.get(command)
        metrics.COMMANDS.labels(command if method is not None else "UNKNOWN").inc()
        if self._require_tls and command in _NEED_TLS and not self.session.facts.HasField("tls"):
            await self.push("530 5.7.0 Must issue a STARTTLS command first")
            return
        if method is None:
            shown = command if command.isprintable() else repr(command)
            await self.push(f'500 5.5.1 Command "{shown[:32]}" not recognized')
            return
        self._reset_timeout()
        try:
            await method(self, arg)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except TLSSetupException as e:
            # The client left, stalled or sent garbage during the handshake. The TLS
            # layer never reports the loss of a connection it did not finish setting
            # up, so the session ends here.
            log.info(
                "tls handshake failed", extra={**self._log_fields(), "error": repr(e.__cause__)}
            )
            self._closing = True
            if self._original_transport is not None:
                self._original_transport.close()
            self.connection_lost(e)
        except Exception:
            log.exception("command failed", extra=self._log_fields())
            await self.push(f"451 4.3.0 {self.hostname} internal error, try again later")
