"""The SMTP session on its own: smtpedge's connection and state machine with a
stub handler in place of the policy, on a real loopback socket, on both event
loops. Byte-exact, as a client sees it; no daemon, no process.

What is here is what the edge owns itself: the limits it restored over the
fork of aiosmtpd (unrecognised commands, line lengths, an idle clock garbage
cannot reset), the framing of message data (no smuggling past the end of a
message), STARTTLS without plaintext injection, and the graceful stop.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from smtpedge.listener_params import ListenerParams
from smtpedge.replies import Reply
from smtpedge.session import EdgeSession, Transaction
from smtpedge.smtp import Sessions, Settings
from tests.smtpclient import RawClient

H = "mx.test"


class Stub:
    """Hooks that let everything through and remember what they saw."""

    def __init__(self) -> None:
        self.messages: list[tuple[Transaction, bytes]] = []
        self.calls: list[str] = []
        self.auth_granted = True

    def offers_auth(self) -> bool:
        return True

    async def shape(self, session: EdgeSession) -> ListenerParams | Reply | None:
        return None

    async def connect(self, session: EdgeSession) -> Reply | None:
        return None

    async def ehlo(self, session: EdgeSession, domain: str, extensions: list[str]) -> list[str]:
        self.calls.append(f"EHLO {domain}")
        return extensions

    async def helo(self, session: EdgeSession, domain: str) -> Reply | None:
        return None

    async def auth(
        self, session: EdgeSession, authz: str, authc: str, password: str
    ) -> Reply | None:
        self.calls.append(f"AUTH {authz!r} {authc!r} {password!r}")
        return None if self.auth_granted else Reply(("535 5.7.8 no",))

    async def mail(self, session: EdgeSession, sender: str, params: list[str]) -> Reply | None:
        self.calls.append(f"MAIL {sender}")
        return None

    async def rcpt(
        self, session: EdgeSession, transaction: Transaction, recipient: str, params: list[str]
    ) -> Reply | None:
        return None

    async def data(self, session: EdgeSession, transaction: Transaction, data: bytes) -> Reply:
        await asyncio.sleep(0.05)  # as long as a policy call and an fsync, say
        self.messages.append((transaction, data))
        return Reply((f"250 OK stored {len(self.messages)}",))

    async def reset(self, session: EdgeSession) -> None:
        self.calls.append("reset")

    async def session_ended(self, session: EdgeSession) -> None:
        self.calls.append("ended")

    rewriting = False

    def rewrites(self) -> bool:
        return self.rewriting

    async def rewrite(
        self, session: EdgeSession, data: bytes, command: str | None
    ) -> tuple[bytes, bool]:
        self.calls.append(f"rewrite {command} {data[:3].decode()}")
        return data, False


class Edge:
    """Sessions on a listener of their own, on an event loop in a thread."""

    def __init__(self, loop_kind: str, tls: ssl.SSLContext | None = None, **settings: Any) -> None:
        self.loop = uvloop.new_event_loop() if loop_kind == "uvloop" else asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.stub = Stub()
        settings.setdefault("max_message_size", 10_000)
        limit = settings.pop("max_connections", 100)
        self.settings = Settings(H, starttls=tls, **settings)
        self.sessions = Sessions(self.stub, limit, H)
        self.server = self.run(self._listen())
        self.port = self.server.sockets[0].getsockname()[1]

    async def _listen(self) -> asyncio.Server:
        return await asyncio.get_running_loop().create_server(
            self.sessions.factory(lambda port: self.settings, self.settings.idle_timeout),
            "127.0.0.1",
            0,
        )

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def call(self, function: Any) -> None:
        self.loop.call_soon_threadsafe(function)

    def client(self) -> RawClient:
        client = RawClient(self.port)
        assert client.reply() == b"220 mx.test ESMTP smtpedge\r\n"
        return client

    def greeted(self) -> RawClient:
        client = self.client()
        assert client.command(b"EHLO client.test").startswith(b"250-mx.test\r\n")
        return client

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            await self.sessions.abort()
            await asyncio.sleep(0.05)

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(params=["uvloop", "asyncio"])
def edge(request) -> Iterator:
    edges: list[Edge] = []

    def make(**settings: Any) -> Edge:
        edges.append(Edge(request.param, **settings))
        return edges[-1]

    yield make
    for made in edges:
        made.close()


def test_a_whole_transaction(edge) -> None:
    e = edge()
    with e.greeted() as client:
        assert client.command(b"MAIL FROM:<a@b.example> SIZE=100") == b"250 OK\r\n"
        assert client.command(b"RCPT TO:<c@d.example>") == b"250 OK\r\n"
        assert client.command(b"DATA") == b"354 End data with <CR><LF>.<CR><LF>\r\n"
        client.send(b"Subject: x\r\n\r\n..dot\r\nbody\r\n.\r\n")
        assert client.reply() == b"250 OK stored 1\r\n"
        assert client.command(b"QUIT") == b"221 Bye\r\n"
        assert client.rest_until_close() == b""
    ((transaction, data),) = e.stub.messages
    assert (transaction.sender, transaction.params, transaction.recipients) == (
        "a@b.example",
        ["SIZE=100"],
        ["c@d.example"],
    )
    assert data == b"Subject: x\r\n\r\n.dot\r\nbody\r\n"


def test_with_a_rewrite_hook_each_reply_waits_for_it_naming_its_command(edge) -> None:
    e = edge()
    e.stub.rewriting = True
    with e.greeted() as client:
        client.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
        for want in (b"250 OK\r\n", b"250 OK\r\n", b"354 "):
            assert client.reply().startswith(want)
        client.send(b"x\r\n.\r\n")
        assert client.reply() == b"250 OK stored 1\r\n"
        assert client.command(b"FROB") == b'500 5.5.1 Command "FROB" not recognized\r\n'
        assert client.command(b"QUIT") == b"221 Bye\r\n"
        assert client.rest_until_close() == b""
    rewrites = [c for c in e.stub.calls if c.startswith("rewrite")]
    assert rewrites == [
        "rewrite None 220",
        "rewrite EHLO 250",
        "rewrite MAIL 250",
        "rewrite RCPT 250",
        "rewrite DATA 354",
        "rewrite DATA 250",
        "rewrite None 500",
        "rewrite QUIT 221",
    ]


def test_the_ehlo_answer(edge) -> None:
    with edge(max_message_size=1000).client() as client:
        assert client.command(b"EHLO client.test") == (
            b"250-mx.test\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
            b"250-PIPELINING\r\n250 HELP\r\n"
        )
    with edge(max_message_size=0).client() as client:
        assert b"SIZE" not in client.command(b"EHLO client.test")


def test_pipelined_replies_come_in_order_and_together(edge) -> None:
    e = edge()
    with e.greeted() as client:
        client.send(
            b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nRCPT TO:<e@f.example>\r\nDATA\r\n"
        )
        for want in (b"250 OK\r\n", b"250 OK\r\n", b"250 OK\r\n", b"354 "):
            assert client.reply().startswith(want)
        client.send(b"x\r\n.\r\nNOOP\r\nRSET\r\n")
        assert [client.reply() for _ in range(3)] == [
            b"250 OK stored 1\r\n",
            b"250 OK\r\n",
            b"250 OK\r\n",
        ]


def test_unrecognised_commands_end_the_session_after_five(edge) -> None:
    """2,000 unknown commands on one connection: four are answered, the fifth
    ends the session, the rest are never read."""
    e = edge()
    with e.greeted() as client:
        client.send(b"".join(b"X%d\r\n" % n for n in range(2000)))
        got = client.rest_until_close()
    assert got == (
        b'500 5.5.1 Command "X0" not recognized\r\n'
        b'500 5.5.1 Command "X1" not recognized\r\n'
        b'500 5.5.1 Command "X2" not recognized\r\n'
        b'500 5.5.1 Command "X3" not recognized\r\n'
        b"502 5.5.1 Too many unrecognized commands, goodbye.\r\n"
    )


def test_malformed_lines_end_the_session_after_a_hundred(edge) -> None:
    e = edge()
    with e.greeted() as client:
        client.send(b"\x01\r\n" * 2000)
        got = client.rest_until_close()
    answered = b"500 5.5.2 Syntax error: control characters in command\r\n"
    assert got == answered * 100 + b"502 5.5.1 Too many unrecognized commands, goodbye.\r\n"


def test_the_two_budgets_are_kept_apart(edge) -> None:
    """A known command refused as invalid counts against the invalid-line budget,
    not the unknown-verb one; a valid one counts against neither."""
    e = edge()
    with e.greeted() as client:
        for _ in range(3):
            assert client.command(b"BOGUS").startswith(b"500 5.5.1 ")
            assert client.command(b"MAIL FROM:<<<") == b"553 5.1.3 Error: malformed address\r\n"
            assert client.command(b"NOOP") == b"250 OK\r\n"
        assert client.command(b"BOGUS").startswith(b"500 5.5.1 ")
        assert client.command(b"BOGUS") == b"502 5.5.1 Too many unrecognized commands, goodbye.\r\n"


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"HELO", b"501 Syntax: HELO hostname\r\n"),
        (b"RCPT TO:<b@example.com>", b"503 Error: need MAIL command\r\n"),
        (b"MAIL FROM:a@", b"553 5.1.3 Error: malformed address\r\n"),
        (b"DATA x", b"503 Error: need RCPT command\r\n"),
        (b"VRFY", b"501 Syntax: VRFY <address>\r\n"),
    ],
    ids=["syntax", "sequence", "path", "data", "vrfy"],
)
def test_invalid_uses_of_known_commands_have_a_budget(edge, line: bytes, reply: bytes) -> None:
    e = edge()
    with e.greeted() as client:
        client.send((line + b"\r\n") * 2000)
        got = client.rest_until_close()
    assert got == reply * 100 + b"502 5.5.1 Too many unrecognized commands, goodbye.\r\n"


def test_invalid_commands_do_not_keep_a_session_alive(edge) -> None:
    e = edge(idle_timeout=1.0)
    with e.greeted() as client:
        began = time.monotonic()  # the EHLO was the last valid command
        for _ in range(4):  # at 0, 0.25, 0.5, 0.75 s: were they to count, 1.75 s
            assert client.command(b"RCPT TO:<b@example.com>") == (
                b"503 Error: need MAIL command\r\n"
            )
            time.sleep(0.25)
        assert client.rest_until_close() == b"421 4.4.2 mx.test idle too long\r\n"
        assert time.monotonic() - began < 1.4


def test_a_message_still_arriving_is_not_idle(edge) -> None:
    """RFC 5321 4.5.3.2.5: the timeout is per data block, so a message taking
    longer than the idle timeout to arrive, line by line, is received whole."""
    e = edge(idle_timeout=0.5)
    with e.greeted() as client:
        client.command(b"MAIL FROM:<a@example.com>")
        client.command(b"RCPT TO:<b@example.com>")
        assert client.command(b"DATA").startswith(b"354 ")
        client.send(b"Subject: slow\r\n\r\n")
        for n in range(8):  # 2 s in all, 0.25 s apart
            time.sleep(0.25)
            client.send(b"line %d\r\n" % n)
        client.send(b".\r\n")
        assert client.reply() == b"250 OK stored 1\r\n"
    ((_, data),) = e.stub.messages
    assert data == b"Subject: slow\r\n\r\n" + b"".join(b"line %d\r\n" % n for n in range(8))


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        # RFC 5321 4.5.3.1.4: 512 octets with the CRLF; MAIL and RCPT after EHLO may
        # have 26 more for SIZE (RFC 1870) and 10 for SMTPUTF8 (RFC 6531).
        (b"MAIL FROM:<" + b"a" * 522 + b"@b.example>", b"250 OK\r\n"),  # 546 with CRLF
        (b"MAIL FROM:<" + b"a" * 524 + b"@b.example>", b"250 OK\r\n"),  # 548 with CRLF
        (b"MAIL FROM:<" + b"a" * 525 + b"@b.example>", b"500 5.5.2 Command line too long\r\n"),
        (b"MAIL FROM:<" + b"a" * 576 + b"@b.example>", b"500 5.5.2 Command line too long\r\n"),
        (b"NOOP " + b"x" * 505, b"250 OK\r\n"),  # 512 with CRLF
        (b"NOOP " + b"x" * 506, b"500 5.5.2 Command line too long\r\n"),
        (b"EHLO " + b"x" * 600, b"500 5.5.2 Command line too long\r\n"),
        (b"X" * 2000, b"500 5.5.2 Command line too long\r\n"),
        (b"X" * 20000, b"500 5.5.2 Command line too long\r\n"),
    ],
    ids=["546", "548", "549", "600 (the issue's example)", "noop-512", "noop-513", "ehlo", "2000",
         "20000"],
)  # fmt: skip
def test_command_line_limits(edge, line: bytes, reply: bytes) -> None:
    with edge().greeted() as client:
        assert client.command(line) == reply
        assert client.command(b"NOOP") == b"250 OK\r\n"  # the session goes on


def test_mail_lines_before_ehlo_have_the_plain_limit(edge) -> None:
    with edge().client() as client:
        assert client.command(b"HELO client.test") == b"250 mx.test\r\n"
        assert client.command(b"MAIL FROM:<" + b"a" * 488 + b"@b.example>") == b"250 OK\r\n"
        client.command(b"RSET")
        assert client.command(b"MAIL FROM:<" + b"a" * 489 + b"@b.example>") == (
            b"500 5.5.2 Command line too long\r\n"
        )


def test_idle_clients_are_told_and_closed(edge) -> None:
    e = edge(idle_timeout=0.3)
    with e.greeted() as client:
        began = time.monotonic()
        assert client.rest_until_close() == b"421 4.4.2 mx.test idle too long\r\n"
        assert 0.25 < time.monotonic() - began < 2


def test_garbage_does_not_keep_a_session_alive(edge) -> None:
    """Neither unknown commands nor a line trickled in byte by byte restart the
    idle clock; recognised commands do."""
    e = edge(idle_timeout=1.0)
    with e.greeted() as client:
        began = time.monotonic()  # the EHLO was the last recognised command
        for n in range(4):  # at 0, 0.25, 0.5, 0.75 s: were they to count, 1.75 s
            assert client.command(b"X%d" % n).startswith(b"500 5.5.1 ")
            time.sleep(0.25)
        assert client.rest_until_close() == b"421 4.4.2 mx.test idle too long\r\n"
        assert time.monotonic() - began < 1.4
    with e.greeted() as client:
        began = time.monotonic()
        with pytest.raises((ConnectionError, BrokenPipeError)):
            for _ in range(30):
                client.send(b"N")
                time.sleep(0.1)
        assert client.rest_until_close() == b"421 4.4.2 mx.test idle too long\r\n"
        assert time.monotonic() - began < 1.5
    with e.greeted() as client:
        for _ in range(8):
            time.sleep(0.25)
            assert client.command(b"NOOP") == b"250 OK\r\n"  # 2 s and still served


def test_data_ends_only_at_crlf_dot_crlf(edge) -> None:
    """A bare LF before or after the dot never ends a message: what looks like a
    second transaction (SMTP smuggling) stays inside the first message."""
    e = edge()
    smuggled = (
        b"Subject: one\r\n\r\nbody\n.\nMAIL FROM:<evil@x.example>\nRCPT TO:<v@y.example>\n"
        b"DATA\n.\r\n\r\n.\nmore\r\n.\rQUIT\r\n.\r\n"
    )
    with e.greeted() as client:
        client.command(b"MAIL FROM:<a@b.example>")
        client.command(b"RCPT TO:<c@d.example>")
        assert client.command(b"DATA").startswith(b"354 ")
        client.send(smuggled)
        assert client.reply() == b"250 OK stored 1\r\n"
        assert client.command(b"NOOP") == b"250 OK\r\n"
    ((_, data),) = e.stub.messages
    # One message: everything up to the CRLF . CRLF, the dots that begin lines removed.
    assert data == (
        b"Subject: one\r\n\r\nbody\n.\nMAIL FROM:<evil@x.example>\nRCPT TO:<v@y.example>\n"
        b"DATA\n.\r\n\r\n\nmore\r\n\rQUIT\r\n"
    )
    assert e.stub.calls.count("MAIL evil@x.example") == 0


@pytest.mark.parametrize(
    ("chunks", "message"),
    [
        ([b".\r\n"], b""),
        ([b".", b"\r", b"\n"], b""),
        ([b"\r\n.\r\n"], b"\r\n"),
        ([b"a\r\n.", b"\r\n"], b"a\r\n"),
        ([b"a\r", b"\n.\r", b"\n"], b"a\r\n"),
        ([b"..\r\n.\r\n"], b".\r\n"),
        ([b"x" * 5000 + b"\r\n", b"y\r\n.\r\n"], None),  # a line too long
    ],
)
def test_data_split_across_packets(edge, chunks: list[bytes], message: bytes | None) -> None:
    e = edge()
    with e.greeted() as client:
        client.command(b"MAIL FROM:<a@b.example>")
        client.command(b"RCPT TO:<c@d.example>")
        assert client.command(b"DATA").startswith(b"354 ")
        for chunk in chunks:
            client.send(chunk)
            time.sleep(0.02)
        if message is None:
            assert client.reply() == b"500 Line too long (see RFC5321 4.5.3.1.6)\r\n"
            assert e.stub.messages == []
        else:
            assert client.reply() == b"250 OK stored 1\r\n"
            assert e.stub.messages[0][1] == message
        assert client.command(b"RCPT TO:<c@d.example>") == b"503 Error: need MAIL command\r\n"


def test_a_message_over_the_limit_is_read_to_its_end_and_refused(edge) -> None:
    e = edge(max_message_size=1000)
    with e.greeted() as client:
        client.command(b"MAIL FROM:<a@b.example>")
        client.command(b"RCPT TO:<c@d.example>")
        assert client.command(b"DATA").startswith(b"354 ")
        for _ in range(200):  # 200 kB, in pieces
            client.send(b"x" * 998 + b"\r\n")
        client.send(b".\r\nNOOP\r\n")
        assert client.reply() == b"552 5.3.4 Error: message too big\r\n"
        assert client.reply() == b"250 OK\r\n"
        assert client.command(b"MAIL FROM:<a@b.example>") == b"250 OK\r\n"  # a fresh start
    assert e.stub.messages == []
    assert e.stub.calls.count("reset") >= 1


def test_a_message_at_the_limit_is_accepted(edge) -> None:
    e = edge(max_message_size=1000)
    body = b"x" * 998 + b"\r\n"  # 1000 octets
    with e.greeted() as client:
        client.command(b"MAIL FROM:<a@b.example>")
        client.command(b"RCPT TO:<c@d.example>")
        client.command(b"DATA")
        client.send(body + b".\r\n")
        assert client.reply() == b"250 OK stored 1\r\n"
    assert e.stub.messages[0][1] == body


def test_commands_pipelined_before_a_half_close_are_answered(edge) -> None:
    e = edge()
    sock = socket.create_connection(("127.0.0.1", e.port), timeout=5)
    sock.sendall(b"EHLO client.test\r\nNOOP\r\nQUIT\r\n")
    sock.shutdown(socket.SHUT_WR)
    got = b""
    while chunk := sock.recv(65536):
        got += chunk
    sock.close()
    assert got.startswith(b"220 mx.test ESMTP smtpedge\r\n250-mx.test\r\n")
    assert got.endswith(b"250 HELP\r\n250 OK\r\n221 Bye\r\n")


def test_a_stopping_server_tells_idle_sessions_at_once_and_busy_ones_after(edge) -> None:
    e = edge()
    idle = e.greeted()
    busy = e.greeted()
    busy.command(b"MAIL FROM:<a@b.example>")
    busy.command(b"RCPT TO:<c@d.example>")
    assert busy.command(b"DATA").startswith(b"354 ")
    busy.send(b"Subject: half\r\n")  # a message half received
    time.sleep(0.05)
    e.call(e.sessions.shut_down)
    assert idle.rest_until_close() == b"421 4.3.2 mx.test service shutting down\r\n"
    busy.send(b"\r\nthe rest\r\n.\r\n")
    assert busy.reply() == b"250 OK stored 1\r\n"  # the message is never cut in half
    assert busy.rest_until_close() == b"421 4.3.2 mx.test service shutting down\r\n"
    assert e.stub.messages[0][1] == b"Subject: half\r\n\r\nthe rest\r\n"


def test_the_connection_limit(edge) -> None:
    e = edge(max_connections=2)
    held = [e.greeted(), e.greeted()]
    with RawClient(e.port) as refused:
        assert refused.rest_until_close() == b"421 4.3.2 mx.test too many connections\r\n"
    held.pop().command(b"QUIT")
    deadline = time.monotonic() + 5
    while True:
        with RawClient(e.port) as client:
            if client.reply().startswith(b"220 "):
                assert client.command(b"NOOP") == b"250 OK\r\n"
                break
        assert time.monotonic() < deadline
    held[0].close()


def test_help_vrfy_expn_and_friends(edge) -> None:
    with edge().client() as client:
        assert client.command(b"HELP") == (
            b"250 Supported commands: AUTH DATA EHLO HELO HELP MAIL NOOP QUIT RCPT RSET VRFY\r\n"
        )
        assert client.command(b"HELP mail") == b"250 Syntax: MAIL FROM: <address>\r\n"
        assert client.command(b"HELP STARTTLS") == (
            b"501 Supported commands: AUTH DATA EHLO HELO HELP MAIL NOOP QUIT RCPT RSET VRFY\r\n"
        )
        client.command(b"EHLO client.test")
        assert client.command(b"HELP RCPT") == (
            b"250 Syntax: RCPT TO: <address> [SP <mail-parameters>]\r\n"
        )
        assert client.command(b"VRFY <a@b.example>") == (
            b"252 Cannot VRFY user, but will accept message and attempt delivery\r\n"
        )
        assert client.command(b"VRFY a b") == b"502 Could not VRFY a b\r\n"
        assert client.command(b"EXPN staff") == b"502 EXPN not implemented\r\n"
        assert client.command(b"NOOP anything") == b"250 OK\r\n"
        assert client.command(b"RSET") == b"250 OK\r\n"
        assert client.command(b"STARTTLS") == b"454 TLS not available\r\n"
        assert client.command(b"AUTH PLAIN") == (
            b"538 5.7.11 Encryption required for requested authentication mechanism\r\n"
        )


# TLS -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "edge.crt", directory / "edge.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=mx.test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_edge(edge, certificate):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return lambda **settings: edge(tls=context, **settings)


class TLSClient(RawClient):
    """A RawClient whose socket goes over to TLS after STARTTLS's 220."""

    def __enter__(self) -> TLSClient:
        return self

    def secure(self) -> None:
        assert not self.buf, self.buf  # nothing may have come in the clear after the 220
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.sock = context.wrap_socket(self.sock, server_hostname="mx.test")


def tls_client(e: Edge) -> TLSClient:
    client = TLSClient(e.port)
    assert client.reply().startswith(b"220 ")
    assert b"250-STARTTLS\r\n" in client.command(b"EHLO client.test")
    return client


def test_plaintext_pipelined_after_starttls_is_discarded(tls_edge) -> None:
    """CVE-2011-0411: commands sent in the clear behind STARTTLS must not be
    carried out inside the TLS session as if the client had sent them there."""
    e = tls_edge()
    with tls_client(e) as client:
        client.send(b"STARTTLS\r\nMAIL FROM:<injected@x.example>\r\nHELP\r\n")
        assert client.reply() == b"220 Ready to start TLS\r\n"
        client.secure()
        assert client.command(b"NOOP") == b"250 OK\r\n"  # not HELP's answer, nor MAIL's
        assert client.command(b"MAIL FROM:<a@b.example>") == b"503 Error: send HELO first\r\n"
        ehlo = client.command(b"EHLO client.test")
        assert b"STARTTLS" not in ehlo and b"250-AUTH LOGIN PLAIN\r\n" in ehlo
        assert client.command(b"MAIL FROM:<a@b.example>") == b"250 OK\r\n"
        assert client.command(b"STARTTLS") == b"503 5.5.1 Error: TLS already active\r\n"
    assert "MAIL injected@x.example" not in e.stub.calls


def test_auth_plain_and_login_over_tls(tls_edge) -> None:
    e = tls_edge()
    with tls_client(e) as client:
        assert client.command(b"STARTTLS") == b"220 Ready to start TLS\r\n"
        client.secure()
        client.command(b"EHLO client.test")
        assert client.command(b"AUTH LOGIN") == b"334 VXNlcm5hbWU6\r\n"
        assert client.command(base64.b64encode(b"bob")) == b"334 UGFzc3dvcmQ6\r\n"
        assert client.command(base64.b64encode(b"pw")) == (
            b"235 2.7.0 Authentication successful\r\n"
        )
        assert client.command(b"AUTH PLAIN") == b"503 Already authenticated\r\n"
    with tls_client(e) as client:  # RFC 4954 section 4: not inside a transaction
        client.command(b"STARTTLS")
        client.secure()
        client.command(b"EHLO client.test")
        assert client.command(b"MAIL FROM:<a@b.example>") == b"250 OK\r\n"
        assert client.command(b"AUTH PLAIN") == (
            b"503 5.5.1 Error: AUTH not permitted during a mail transaction\r\n"
        )
        assert client.command(b"RSET") == b"250 OK\r\n"
        assert client.command(b"AUTH PLAIN") == b"334 \r\n"
        client.command(b"*")
    with tls_client(e) as client:
        client.command(b"STARTTLS")
        client.secure()
        client.command(b"EHLO client.test")
        assert client.command(b"AUTH plain") == b"334 \r\n"  # mechanisms: any case
        assert client.command(b"=") == b"501 5.5.2 Can't split auth value\r\n"
        assert client.command(b"AUTH PLAIN " + b"A" * 13000) == (
            b"500 5.5.2 Command line too long\r\n"
        )
        assert client.command(b"AUTH PLAIN") == b"334 \r\n"
        assert client.command(b"A" * 13000) == (
            b"500 5.5.6 Authentication Exchange line is too long\r\n"
        )
        blob = base64.b64encode(b"zid\0carol\0" + b"p" * 8000)  # a long one is fine
        assert client.command(b"AUTH PLAIN " + blob) == b"235 2.7.0 Authentication successful\r\n"
    assert e.stub.calls.count("AUTH '' 'bob' 'pw'") == 1
    assert e.stub.calls.count(f"AUTH 'zid' 'carol' {'p' * 8000!r}") == 1


def test_a_broken_handshake_ends_the_session_and_frees_its_slot(tls_edge) -> None:
    e = tls_edge(max_connections=1)
    for _ in range(3):
        with tls_client(e) as client:
            assert client.command(b"STARTTLS") == b"220 Ready to start TLS\r\n"
            client.send(b"this is not a TLS client hello\r\n" * 4)
            assert client.rest_until_close() == b""
    deadline = time.monotonic() + 5
    while "ended" not in e.stub.calls or len(e.sessions.open):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with tls_client(e) as client:
        assert client.command(b"NOOP") == b"250 OK\r\n"
