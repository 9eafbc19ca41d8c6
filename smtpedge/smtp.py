"""The SMTP state machine: one session's dialogue, from the banner to QUIT.

It reads command lines from its Connection, takes them apart with `commands`,
keeps the order of the dialogue (greeting, transaction, recipients, data) and
the session's limits, and at each stage calls a named hook of its handler
(handler.py: where the policy is asked), sending what the hook answers. It
knows nothing of the policy or of delivery (the handler does) nor of sockets
(the connection does). Its own replies keep aiosmtpd's wording.

Limits, at least as strict as aiosmtpd's:
- command lines: 512 octets with their CRLF (RFC 5321 section 4.5.3.1.4);
  after EHLO, MAIL and RCPT 36 more (SIZE +26, RFC 1870; SMTPUTF8 +10, RFC
  6531); AUTH lines 12288 (RFC 4954). Longer: `500 5.5.2 Command line too long`.
- per session, 5 unrecognised verbs and 100 invalid lines: malformed lines, and
  known commands refused for their syntax or their place in the dialogue (5xx
  from this state machine, not the policy's refusals). Line noise and a
  confused client are survived, a flood is not: past either budget, `502 5.5.1
  Too many unrecognized commands, goodbye.` and the connection is closed.
- the idle clock restarts only with commands accepted as valid, never with
  garbage or with commands refused as invalid; while a message is being sent,
  each part of it that arrives restarts it (RFC 5321 4.5.3.2.5: a timeout per
  data block, not for the whole transfer).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Protocol

from smtpedge import commands, metrics
from smtpedge.commands import Refused
from smtpedge.connection import Closed, Connection, DataProblem
from smtpedge.listener_params import ListenerParams
from smtpedge.replies import Reply, ehlo_reply
from smtpedge.session import EdgeSession, Transaction

log = logging.getLogger("smtpedge.session")

COMMAND_LINE = 512
PATH_LINE = COMMAND_LINE + 26 + 10
AUTH_LINE = 12288
UNRECOGNISED_LIMIT = 5
INVALID_LIMIT = 100
NEED_TLS = frozenset({"MAIL", "RCPT", "DATA"})  # with --require-tls
MECHANISMS = ("LOGIN", "PLAIN")


def _line(text: str) -> bytes:
    return text.encode("utf-8") + b"\r\n"


OK = b"250 OK\r\n"
TOO_LONG = b"500 5.5.2 Command line too long\r\n"
GOODBYE = b"502 5.5.1 Too many unrecognized commands, goodbye.\r\n"
SEND_HELO = b"503 Error: send HELO first\r\n"
DATA_TOO_BIG = b"552 5.3.4 Error: message too big\r\n"
DATA_LINE_TOO_LONG = b"500 Line too long (see RFC5321 4.5.3.1.6)\r\n"
MUST_STARTTLS = b"530 5.7.0 Must issue a STARTTLS command first\r\n"
AUTH_OK = b"235 2.7.0 Authentication successful\r\n"


class Hooks(Protocol):
    """What the state machine asks its handler (handler.py). A hook returns
    None to let the command proceed (the state machine answers as usual), or
    the Reply to send instead; `auth` granting also records who the session
    now is (EdgeSession.authenticated_as)."""

    def offers_auth(self) -> bool: ...
    async def shape(self, session: EdgeSession) -> ListenerParams | Reply | None: ...
    async def connect(self, session: EdgeSession) -> Reply | None: ...
    async def ehlo(
        self, session: EdgeSession, domain: str, extensions: list[str]
    ) -> list[str] | Reply: ...
    async def helo(self, session: EdgeSession, domain: str) -> Reply | None: ...
    async def auth(
        self, session: EdgeSession, authz: str, authc: str, password: str
    ) -> Reply | None: ...
    async def mail(self, session: EdgeSession, sender: str, params: list[str]) -> Reply | None: ...
    async def rcpt(
        self, session: EdgeSession, transaction: Transaction, recipient: str, params: list[str]
    ) -> Reply | None: ...
    async def data(self, session: EdgeSession, transaction: Transaction, data: bytes) -> Reply: ...
    async def reset(self, session: EdgeSession) -> None: ...
    async def session_ended(self, session: EdgeSession) -> None: ...
    def rewrites(self) -> bool: ...
    async def rewrite(
        self, session: EdgeSession, data: bytes, command: str | None
    ) -> tuple[bytes, bool]: ...


class Settings:
    """What the sessions of one listener share, their fixed replies encoded once."""

    def __init__(
        self,
        hostname: str,
        *,
        max_message_size: int = 0,  # 0: no limit (and no SIZE)
        max_recipients: int = 100,
        max_messages_per_connection: int = 10_000,
        idle_timeout: float = 300.0,
        starttls: ssl.SSLContext | None = None,  # offered when set
        require_tls: bool = False,
        banner: str = "ESMTP smtpedge",
        params: ListenerParams | None = None,  # what the sessions' handler is to apply
    ) -> None:
        self.hostname = hostname
        self.max_message_size = max_message_size
        self.max_recipients = max_recipients
        self.max_messages_per_connection = max_messages_per_connection
        self.idle_timeout = idle_timeout
        self.starttls = starttls
        self.require_tls = require_tls
        self.params = params
        self.banner = _line(f"220 {hostname} {banner}")
        self.too_many_on_connection = Reply(
            (f"421 4.5.3 {hostname} too many recipients on this connection",), close=True
        )
        self.helo_ok = _line(f"250 {hostname}")
        self.shutting_down = _line(f"421 4.3.2 {hostname} service shutting down")
        self.idle_too_long = _line(f"421 4.4.2 {hostname} idle too long")
        self.internal_error = _line(f"451 4.3.0 {hostname} internal error, try again later")
        self.extensions = (
            *((f"SIZE {max_message_size}",) if max_message_size else ()),
            "8BITMIME",
            "SMTPUTF8",
        )
        # HELP's commands: STARTTLS only where it is offered.
        self.help_verbs = frozenset(v for v in commands.SYNTAX if v != "STARTTLS" or starttls)
        self.help = " ".join(sorted(self.help_verbs))
        self._ehlo: dict[tuple[str, ...], bytes] = {}

    @classmethod
    def shaped(
        cls,
        params: ListenerParams,
        *,
        idle_timeout: float,
        starttls: ssl.SSLContext | None,
        require_tls: bool,
    ) -> Settings:
        """A listener's settings as its parameters shape them."""
        return cls(
            params.hostname,
            banner=params.banner,
            max_message_size=params.max_message_size,
            max_recipients=params.max_recipients,
            max_messages_per_connection=params.max_messages_per_connection,
            idle_timeout=idle_timeout,
            starttls=starttls,
            require_tls=require_tls,
            params=params,
        )

    def reshaped(self, params: ListenerParams) -> Settings:
        """These settings with a connection's own listener parameters."""
        return Settings.shaped(
            params,
            idle_timeout=self.idle_timeout,
            starttls=self.starttls,
            require_tls=self.require_tls,
        )

    def ehlo_answer(self, extensions: list[str]) -> bytes:
        """The EHLO reply, kept for the few lists an edge announces."""
        key = tuple(extensions)
        answer = self._ehlo.get(key)
        if answer is None:
            answer = ehlo_reply(self.hostname, key)
            if len(self._ehlo) < 64:
                self._ehlo[key] = answer
        return answer


_REPLY_COUNTS = {ord(digit): counter for digit, counter in metrics.REPLY_CLASS.items()}
Command = Callable[["SMTPSession", str | None], Awaitable[None]]


class SMTPSession:
    def __init__(
        self, conn: Connection, hooks: Hooks, settings: Settings, session: EdgeSession
    ) -> None:
        self.conn = conn
        self.hooks = hooks
        self.settings = settings
        self.session = session
        self.greeted = False
        self.extended = False  # EHLO rather than HELO
        self.authenticated = False
        self.transaction: Transaction | None = None
        self._recipients = 0  # accepted in this session, over its transactions
        self.draining = False
        self._unrecognised = UNRECOGNISED_LIMIT
        self._invalid_left = INVALID_LIMIT
        self._was_invalid = False  # the command being handled was refused as invalid
        self.task: asyncio.Task[None] | None = None  # the task running the session
        # With an smtp_server_rewrite_response handler, replies wait here for
        # the policy until the command is done (or the session reads again).
        self._rewriting = hooks.rewrites()
        self._pending: list[bytes] = []
        self._closing = False
        self._command: str | None = None  # the verb being answered
        self._debug = log.isEnabledFor(logging.DEBUG)
        conn.timed_out = self._timed_out

    @property
    def tls(self) -> bool:
        """A TLS listener, or STARTTLS done: the connection knows."""
        return self.conn.secure

    async def run(self) -> None:
        conn = self.conn
        metrics.SESSIONS.inc()
        metrics.SESSIONS_OPEN.inc()
        if self._debug:
            log.debug("session opened", extra=self.session.log_fields())
        try:
            shaped = await self.hooks.shape(self.session)
            if isinstance(shaped, Reply):
                self._send(shaped)
                await self._flush()
                return
            if shaped is not None:
                self.settings = self.settings.reshaped(shaped)
                self.session.params = shaped
            reply = await self.hooks.connect(self.session)
            if reply is None:
                self._say(self.settings.banner)
            else:
                self._send(reply)
            await self._flush()
            while not conn.closed:
                if self.draining:
                    self._say(self.settings.shutting_down)
                    await self._flush()
                    break
                await self._dispatch(await conn.read_command(AUTH_LINE))
                if self._rewriting:
                    await self._flush()
        except Closed:
            pass
        except Exception:
            log.exception("session failed", extra=self.session.log_fields())
        finally:
            conn.close()
            metrics.SESSIONS_OPEN.dec()
            if self._debug:
                log.debug("session closed", extra=self.session.log_fields())
            await self.hooks.session_ended(self.session)

    def shut_down(self) -> None:
        """The server is stopping: an idle session is told now, a busy one after
        its command (a message being received is received and answered first)."""
        self.draining = True
        if self.conn.awaiting_command:
            self._write(self.settings.shutting_down)  # unilateral: not rewritten
            self.conn.close()

    def _timed_out(self) -> None:
        log.info("idle timeout", extra=self.session.log_fields())
        self._write(self.settings.idle_too_long)  # unilateral: not rewritten
        self.conn.close()

    # Replies -------------------------------------------------------------------

    def _say(self, data: bytes) -> None:
        if self._rewriting:
            self._pending.append(data)
        else:
            self._write(data)

    def _close(self) -> None:
        """Closes once the replies said so far are sent."""
        if self._pending:
            self._closing = True
        else:
            self.conn.close()

    async def _flush(self) -> None:
        """Sends the replies waiting for smtp_server_rewrite_response, as the
        policy rewrote them; a reply it turned into a 421 closes the session."""
        if not self._rewriting:
            return
        pending, self._pending = self._pending, []
        for data in pending:
            data, close = await self.hooks.rewrite(self.session, data, self._command)
            self._write(data)
            self._closing = self._closing or close
        if self._closing:
            self.conn.close()
            raise Closed

    def _write(self, data: bytes) -> None:
        self.conn.write(data)
        counter = _REPLY_COUNTS.get(data[0])
        if counter is not None:
            counter.inc()
        if self._debug:
            log.debug(
                "reply",
                extra={**self.session.log_fields(), "reply": data.decode(errors="replace")},
            )

    def _send(self, reply: Reply) -> None:
        self._say(reply.encode())
        if reply.close:
            self._close()

    def _refuse(self, error: Refused) -> None:
        self._invalid(_line(error.reply))

    def _syntax_error(self, verb: str) -> None:
        self._invalid(_SYNTAX_ERRORS[verb])

    # Dispatch ------------------------------------------------------------------

    def _limit(self, verb: str) -> int:
        if verb == "AUTH":
            return AUTH_LINE
        if self.extended and verb in ("MAIL", "RCPT"):
            return PATH_LINE
        return COMMAND_LINE

    async def _dispatch(self, line: bytes | None) -> None:
        if line is None:
            self._invalid(TOO_LONG)
            return
        try:
            verb, arg = commands.split(line)
        except Refused as e:
            self._refuse(e)
            return
        if len(line) + 2 > COMMAND_LINE and len(line) + 2 > self._limit(verb):
            self._invalid(TOO_LONG)
            return
        command = COMMANDS.get(verb)
        self._command = verb if command is not None else None
        if command is None:
            self._unrecognised_verb(verb)
            return
        COMMAND_COUNTS[verb].inc()
        if self.settings.require_tls and not self.tls and verb in NEED_TLS:
            self._invalid(MUST_STARTTLS)
            return
        self._was_invalid = False
        try:
            await command(self, arg)
        except Closed:
            raise
        except Exception:
            log.exception("command failed", extra=self.session.log_fields())
            self._say(self.settings.internal_error)
        if not self._was_invalid:
            self.conn.active()

    def _invalid(self, reply: bytes) -> None:
        """A malformed line, or a command refused for its syntax or its place in the
        dialogue: answered, and counted against the session's budget."""
        self._was_invalid = True
        self._invalid_left -= 1
        if self._invalid_left < 0:
            self._goodbye("invalid")
        else:
            self._say(reply)

    def _unrecognised_verb(self, verb: str) -> None:
        COMMAND_COUNTS["UNKNOWN"].inc()
        self._unrecognised -= 1
        if self._unrecognised <= 0:
            self._goodbye("unrecognised")
            return
        shown = verb if verb.isprintable() else repr(verb)
        self._say(_line(f'500 5.5.1 Command "{shown[:32]}" not recognized'))

    def _goodbye(self, what: str) -> None:
        log.info("too many bad commands", extra={**self.session.log_fields(), "kind": what})
        self._say(GOODBYE)
        self._close()

    async def _end_transaction(self) -> None:
        if self.transaction is not None:
            self.transaction = None
            await self.hooks.reset(self.session)

    # Greeting ------------------------------------------------------------------

    async def _helo(self, arg: str | None) -> None:
        if not arg:
            self._syntax_error("HELO")
            return
        await self._end_transaction()
        self.extended = False
        reply = await self.hooks.helo(self.session, arg)
        self.greeted = reply is None
        self.session.greeted(arg if reply is None else None, esmtp=False)
        if reply is None:
            self._say(self.settings.helo_ok)
        else:
            self._send(reply)

    async def _ehlo(self, arg: str | None) -> None:
        if not arg:
            self._syntax_error("EHLO")
            return
        await self._end_transaction()
        self.extended = True
        result = await self.hooks.ehlo(self.session, arg, self._extensions())
        if isinstance(result, Reply):
            self.greeted = False
            self.session.greeted(None)
            self._send(result)
        else:
            self.greeted = True
            self.session.greeted(arg, esmtp=True)
            self._say(self.settings.ehlo_answer(result))

    def _extensions(self) -> list[str]:
        extensions = list(self.settings.extensions)
        if self.settings.starttls is not None and not self.tls:
            extensions.append("STARTTLS")
        if self.tls and self.hooks.offers_auth():  # nothing could grant it otherwise
            extensions.append("AUTH " + " ".join(MECHANISMS))
        extensions += ("PIPELINING", "HELP")
        return extensions

    # TLS and AUTH --------------------------------------------------------------

    async def _starttls(self, arg: str | None) -> None:
        if arg:
            self._syntax_error("STARTTLS")
            return
        context = self.settings.starttls
        if context is None:
            self._invalid(b"454 TLS not available\r\n")
            return
        if self.tls:
            self._invalid(b"503 5.5.1 Error: TLS already active\r\n")
            return
        self._say(b"220 Ready to start TLS\r\n")
        await self._flush()
        await self._end_transaction()
        try:
            await self.conn.start_tls(context, self.settings.idle_timeout)
        except Exception as e:  # the client left, stalled or sent garbage instead
            log.info("tls handshake failed", extra={**self.session.log_fields(), "error": repr(e)})
            raise Closed from e
        # RFC 3207: the client starts over, and nothing it said before counts.
        self.greeted = self.extended = False
        self.session.secured(self.conn.transport.get_extra_info("ssl_object"))
        self.session.greeted(None)
        log.info("tls", extra={**self.session.log_fields(), "tls": self.session.facts.tls.cipher})

    async def _auth(self, arg: str | None) -> None:
        if not self.greeted:
            self._invalid(b"503 Error: send EHLO first\r\n")
            return
        if not self.extended:
            self._invalid(b"500 Error: command 'AUTH' not recognized\r\n")
            return
        if not self.tls:
            self._invalid(
                b"538 5.7.11 Encryption required for requested authentication mechanism\r\n"
            )
            return
        if self.authenticated:
            self._invalid(b"503 Already authenticated\r\n")
            return
        if self.transaction is not None:  # RFC 4954 section 4
            self._invalid(b"503 5.5.1 Error: AUTH not permitted during a mail transaction\r\n")
            return
        if not arg:
            self._invalid(b"501 Not enough value\r\n")
            return
        args = arg.split()
        if len(args) > 2:
            self._invalid(b"501 Too many values\r\n")
            return
        mechanism = args[0].upper()
        if mechanism not in MECHANISMS or not self.hooks.offers_auth():
            self._invalid(b"504 5.5.4 Unrecognized authentication type\r\n")
            return
        credentials = await self._credentials(mechanism, args[1] if len(args) == 2 else None)
        if credentials is None:
            return None  # the client's data was unusable, and it has been told
        authz, authc, password = credentials
        reply = await self.hooks.auth(self.session, authz, authc, password)
        if reply is not None:
            self._send(reply)
            return
        self.authenticated = True  # the hook recorded who as (session.facts.auth)
        authn_id = self.session.facts.auth.authn_id
        log.info("authenticated", extra={**self.session.log_fields(), "authn_id": authn_id})
        self._say(AUTH_OK)

    async def _credentials(
        self, mechanism: str, initial: str | None
    ) -> tuple[str, str, str] | None:
        """(authz, authc, password) from PLAIN or LOGIN, with the challenges each
        needs (RFC 4616, and LOGIN as clients do it); None once the client has
        been told why its data is unusable."""
        if mechanism == "PLAIN":
            blob = await self._response(initial, b"")
            if blob is None:
                return None
            parts = blob.split(b"\0")
            if len(parts) != 3:
                self._invalid(b"501 5.5.2 Can't split auth value\r\n")
                return None
        else:
            username = await self._response(initial, b"Username:")
            password = None if username is None else await self._response(None, b"Password:")
            if username is None or password is None:
                return None
            parts = [b"", username, password]
        try:
            authz, authc, secret = (part.decode("utf-8") for part in parts)
        except UnicodeDecodeError:
            self._invalid(b"501 5.5.2 Credentials are not valid UTF-8\r\n")
            return None
        return authz, authc, secret

    async def _response(self, initial: str | None, challenge: bytes) -> bytes | None:
        """The client's base64 answer: the initial response given with AUTH, or
        the one to `challenge` ("=" is an empty one, RFC 4954)."""
        if initial is None:
            self._say(b"334 " + base64.b64encode(challenge) + b"\r\n")
            await self._flush()
            line = await self.conn.read_line(AUTH_LINE)
            if line is None:
                self._invalid(b"500 5.5.6 Authentication Exchange line is too long\r\n")
                return None
            answer = line.strip()
            if answer == b"*":
                self._say(b"501 5.7.0 Auth aborted\r\n")
                return None
        else:
            answer = initial.encode("ascii", errors="replace")
        if answer == b"=":
            return b""
        try:
            return base64.b64decode(answer, validate=True)
        except binascii.Error:
            self._invalid(b"501 5.5.2 Can't decode base64\r\n")
            return None

    # The transaction -------------------------------------------------------------

    async def _mail(self, arg: str | None) -> None:
        if not self.greeted:
            self._invalid(SEND_HELO)
            return
        if self.transaction is not None:
            self._invalid(b"503 Error: nested MAIL command\r\n")
            return
        try:
            sender, params = commands.mail_from(
                arg, extended=self.extended, size_limit=self.settings.max_message_size
            )
        except Refused as e:
            self._refuse(e)
            return
        reply = await self.hooks.mail(self.session, sender, params)
        if reply is not None:
            self._send(reply)
            return
        self.transaction = Transaction(sender, params)
        self._say(OK)

    async def _rcpt(self, arg: str | None) -> None:
        if not self.greeted:
            self._invalid(SEND_HELO)
            return
        transaction = self.transaction
        if transaction is None:
            self._invalid(b"503 Error: need MAIL command\r\n")
            return
        try:
            recipient, params = commands.rcpt_to(arg, extended=self.extended)
        except Refused as e:
            self._refuse(e)
            return
        if len(transaction.recipients) >= self.settings.max_recipients:
            self._say(b"452 4.5.3 Error: too many recipients\r\n")
            return
        if self._recipients >= self.settings.max_messages_per_connection:
            if transaction.recipients:
                self._say(b"452 4.5.3 too many recipients on this connection\r\n")
            else:  # nothing to deliver in this transaction: the session is over
                self._send(self.settings.too_many_on_connection)
            return
        reply = await self.hooks.rcpt(self.session, transaction, recipient, params)
        if reply is not None:
            self._send(reply)
            return
        transaction.recipients.append(recipient)
        self._recipients += 1
        self._say(OK)

    async def _data(self, arg: str | None) -> None:
        if not self.greeted:
            self._invalid(SEND_HELO)
            return
        transaction = self.transaction
        if transaction is None or not transaction.recipients:
            self._invalid(b"503 Error: need RCPT command\r\n")
            return
        if arg:
            self._syntax_error("DATA")
            return
        self._say(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        await self._flush()
        data = await self.conn.read_data(self.settings.max_message_size)
        self.transaction = None  # whatever happens next, the transaction is over
        if isinstance(data, DataProblem):
            await self.hooks.reset(self.session)
            self._say(DATA_TOO_BIG if data is DataProblem.TOO_BIG else DATA_LINE_TOO_LONG)
            return
        self._send(await self.hooks.data(self.session, transaction, data))

    async def _rset(self, arg: str | None) -> None:
        if arg:
            self._syntax_error("RSET")
            return
        await self._end_transaction()
        self._say(OK)

    # The rest ----------------------------------------------------------------------

    async def _noop(self, arg: str | None) -> None:
        self._say(OK)

    async def _quit(self, arg: str | None) -> None:
        if arg:
            self._syntax_error("QUIT")
            return
        self._say(b"221 Bye\r\n")
        self._close()

    async def _vrfy(self, arg: str | None) -> None:
        if not arg:
            self._syntax_error("VRFY")
            return
        if commands.vrfy_address(arg) is None:
            self._invalid(_line(f"502 Could not VRFY {arg}"))
            return
        self._say(b"252 Cannot VRFY user, but will accept message and attempt delivery\r\n")

    async def _expn(self, arg: str | None) -> None:
        self._invalid(b"502 EXPN not implemented\r\n")

    async def _help(self, arg: str | None) -> None:
        if not arg:
            self._say(_line(f"250 Supported commands: {self.settings.help}"))
            return
        verb = arg.upper()
        if verb in self.settings.help_verbs:
            self._say(_line(f"250 Syntax: {commands.syntax(verb, self.extended)}"))
            return
        self._invalid(_line(f"501 Supported commands: {self.settings.help}"))


COMMANDS: dict[str, Command] = {
    "HELO": SMTPSession._helo,
    "EHLO": SMTPSession._ehlo,
    "STARTTLS": SMTPSession._starttls,
    "AUTH": SMTPSession._auth,
    "MAIL": SMTPSession._mail,
    "RCPT": SMTPSession._rcpt,
    "DATA": SMTPSession._data,
    "RSET": SMTPSession._rset,
    "NOOP": SMTPSession._noop,
    "QUIT": SMTPSession._quit,
    "VRFY": SMTPSession._vrfy,
    "EXPN": SMTPSession._expn,
    "HELP": SMTPSession._help,
}
_SYNTAX_ERRORS = {verb: _line(commands.syntax_error(verb)) for verb in commands.SYNTAX}
COMMAND_COUNTS = {verb: metrics.COMMANDS.labels(verb) for verb in (*COMMANDS, "UNKNOWN")}
_REFUSED = metrics.CONNECTIONS_REFUSED.labels("max_connections")


class Sessions:
    """The edge's open sessions, at most `limit` at once over all its listeners."""

    def __init__(self, hooks: Hooks, limit: int, hostname: str) -> None:
        self.hooks = hooks
        self.limit = limit
        self.open: set[SMTPSession] = set()
        self._refusal = _line(f"421 4.3.2 {hostname} too many connections")

    def factory(
        self, settings: Callable[[int], Settings], idle_timeout: float
    ) -> Callable[[], Connection]:
        """The protocol factory for one listener's `loop.create_server`; each
        session gets the settings of the moment for the port it came in by."""
        return lambda: Connection(lambda conn: self._open(conn, settings), idle_timeout)

    def _open(self, conn: Connection, settings_for: Callable[[int], Settings]) -> bool:
        if len(self.open) >= self.limit:
            _REFUSED.inc()
            conn.write(self._refusal)
            return False
        local = conn.local()
        settings = settings_for(local[1])
        session = EdgeSession(conn.peer(), local)
        session.params = settings.params
        if conn.secure:  # a TLS listener
            session.secured(conn.transport.get_extra_info("ssl_object"))
        smtp = SMTPSession(conn, self.hooks, settings, session)
        self.open.add(smtp)
        task = smtp.task = asyncio.get_running_loop().create_task(smtp.run())
        task.add_done_callback(lambda _: self.open.discard(smtp))
        return True

    def shut_down(self) -> None:
        for smtp in list(self.open):
            smtp.shut_down()

    async def abort(self, timeout: float = 5.0) -> None:
        """Closes every connection, and waits (within `timeout`) for their sessions
        to have ended, transactions reset, so delivery can close after them."""
        for smtp in list(self.open):
            smtp.conn.abort()
        tasks = [smtp.task for smtp in self.open if smtp.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
