"""Hostile and broken SMTP clients: correct replies, no crash, no hang.

A corpus of malformed command sequences runs against one edge; each case
starts a fresh session at a given point (after the banner, after EHLO, inside
a transaction), sends its bytes and checks every reply. Then the edge's limits
(message size, recipients, idle time, connections), each with its own edge.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.mailstore import read_maildir
from tests.smtpclient import RawClient

POLICY = "kumo.on('smtp_server_mail_from', function(sender) end)"

# Where a case starts: the commands sent (and answered 2xx/3xx) before its bytes.
SETUP = {
    "banner": [],
    "ehlo": [b"EHLO client.test"],
    "helo": [b"HELO client.test"],
    "mail": [b"EHLO client.test", b"MAIL FROM:<a@example.com>"],
    "rcpt": [b"EHLO client.test", b"MAIL FROM:<a@example.com>", b"RCPT TO:<b@example.com>"],
}

E500 = rb"500 5\.5\.2 Syntax error: "
CASES: list[tuple[str, str, bytes, list[bytes]]] = [
    # name, setup, bytes sent, expected replies (regular expressions, one per reply)
    ("empty line", "banner", b"\r\n", [E500 + rb"empty command"]),
    ("spaces only", "banner", b"    \r\n", [E500 + rb"empty command"]),
    ("unknown verb", "banner", b"FOO bar\r\n", [rb'500 5\.5\.1 Command "FOO" not recognized']),
    ("NUL bytes", "banner", b"\x00\x00\x00\r\n", [E500 + rb"control characters"]),
    ("NUL in verb", "banner", b"HE\x00LO x\r\n", [E500 + rb"control characters"]),
    ("NUL in address", "ehlo", b"MAIL FROM:<a\x00b@x>\r\n", [E500 + rb"control characters"]),
    ("escape sequence", "banner", b"\x1b[31mEHLO x\r\n", [E500 + rb"control characters"]),
    ("bare CR inside", "banner", b"NO\rOP\r\n", [E500 + rb"control characters"]),
    ("binary verb", "banner", b"\xff\xfe\xfd\r\n", [E500 + rb"command is not valid UTF-8"]),
    ("invalid UTF-8 arg", "banner", b"EHLO \xc3\x28\r\n", [E500 + rb"command is not valid UTF-8"]),
    ("latin-1 address", "ehlo", b"MAIL FROM:<\xe9@x>\r\n", [E500 + rb"command is not valid UTF-8"]),
    (
        "overlong UTF-8",
        "ehlo",
        b"MAIL FROM:<\xc0\xaf@x>\r\n",
        [E500 + rb"command is not valid UTF-8"],
    ),
    ("line over 1000", "banner", b"X" * 2000 + b"\r\n", [rb"500 5\.5\.2 Command line too long"]),
    (
        "line of 100k",
        "ehlo",
        b"MAIL FROM:<" + b"a" * 100_000 + b">\r\n",
        [rb"500 5\.5\.2 Command line too long"],
    ),
    (
        "long then valid",
        "banner",
        b"Y" * 5000 + b"\r\nNOOP\r\n",
        [rb"500 5\.5\.2 Command line too long", rb"250 OK"],
    ),
    ("EHLO without name", "banner", b"EHLO\r\n", [rb"501 Syntax: EHLO hostname"]),
    ("HELO without name", "banner", b"HELO\r\n", [rb"501 Syntax: HELO hostname"]),
    ("MAIL before EHLO", "banner", b"MAIL FROM:<a@b.c>\r\n", [rb"503 Error: send HELO first"]),
    ("RCPT before EHLO", "banner", b"RCPT TO:<a@b.c>\r\n", [rb"503 Error: send HELO first"]),
    ("DATA before EHLO", "banner", b"DATA\r\n", [rb"503 Error: send HELO first"]),
    ("MAIL without FROM", "ehlo", b"MAIL\r\n", [rb"501 Syntax: MAIL FROM: <address>"]),
    ("MAIL FROM no colon", "ehlo", b"MAIL FROM <a@b.c>\r\n", [rb"501 Syntax: MAIL FROM"]),
    ("MAIL FROM empty", "ehlo", b"MAIL FROM:\r\n", [rb"501 Syntax: MAIL FROM"]),
    ("MAIL bad SIZE", "ehlo", b"MAIL FROM:<a@b.c> SIZE=abc\r\n", [rb"501 Syntax: MAIL FROM"]),
    (
        "MAIL unknown param",
        "ehlo",
        b"MAIL FROM:<a@b.c> FOO=bar\r\n",
        [rb"555 MAIL FROM parameters"],
    ),
    ("MAIL bad BODY", "ehlo", b"MAIL FROM:<a@b.c> BODY=9BIT\r\n", [rb"501 Error: BODY can only"]),
    ("MAIL broken address", "ehlo", b"MAIL FROM:<<<@>>>\r\n", [rb"5(01|53) "]),
    (
        "MAIL params after HELO",
        "helo",
        b"MAIL FROM:<a@b.c> SIZE=10\r\n",
        [rb"501 Syntax: MAIL FROM"],
    ),
    ("nested MAIL", "mail", b"MAIL FROM:<c@d.e>\r\n", [rb"503 Error: nested MAIL command"]),
    ("RCPT without MAIL", "ehlo", b"RCPT TO:<a@b.c>\r\n", [rb"503 Error: need MAIL command"]),
    ("RCPT without TO", "mail", b"RCPT\r\n", [rb"501 Syntax: RCPT TO: <address>"]),
    ("RCPT TO empty", "mail", b"RCPT TO:\r\n", [rb"501 Syntax: RCPT TO"]),
    (
        "RCPT unknown param",
        "mail",
        b"RCPT TO:<a@b.c> NOTIFY=NEVER\r\n",
        [rb"555 RCPT TO parameters"],
    ),
    ("RCPT broken address", "mail", b"RCPT TO:<@@@>\r\n", [rb"5(01|53) "]),
    ("DATA without RCPT", "mail", b"DATA\r\n", [rb"503 Error: need RCPT command"]),
    ("DATA with argument", "rcpt", b"DATA now\r\n", [rb"501 Syntax: DATA"]),
    ("RSET with argument", "ehlo", b"RSET all\r\n", [rb"501 Syntax: RSET"]),
    ("QUIT with argument", "ehlo", b"QUIT now\r\n", [rb"501 Syntax: QUIT"]),
    ("VRFY without argument", "ehlo", b"VRFY\r\n", [rb"501 Syntax: VRFY <address>"]),
    ("EXPN", "ehlo", b"EXPN staff\r\n", [rb"502 EXPN not implemented"]),
    ("HELP for nonsense", "ehlo", b"HELP BOGUS\r\n", [rb"501 Supported commands: "]),
    ("STARTTLS without TLS", "ehlo", b"STARTTLS\r\n", [rb"454 TLS not available"]),
    ("AUTH without TLS", "ehlo", b"AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n", [rb"538 5\.7\.11 "]),
    ("BDAT", "rcpt", b"BDAT 10 LAST\r\n", [rb'500 5\.5\.1 Command "BDAT" not recognized']),
    ("tab before verb", "banner", b"\tNOOP\r\n", [rb"500 5\.5\.1 "]),
    ("bare LF endings", "banner", b"NOOP\nNOOP\n", [rb"250 OK", rb"250 OK"]),
    ("CR CR LF ending", "banner", b"NOOP\r\r\n", [rb"250 OK"]),
    (
        "lowercase and mixed",
        "ehlo",
        b"mail from:<a@b.c>\r\nrCpT tO:<d@e.f>\r\n",
        [rb"250 OK", rb"250 OK"],
    ),
    (
        "100 garbage lines",
        "banner",
        b"\x01\x02\r\n" * 100 + b"NOOP\r\n",
        [E500 + rb"control characters"] * 100 + [rb"250 OK"],
    ),
    (
        "junk pipelined after QUIT",
        "ehlo",
        b"QUIT\r\nNOOP\r\nMAIL FROM:<x@y.z>\r\nFOO\r\n",
        [rb"221 Bye"],
    ),
    (
        "DATA line over 1000",
        "rcpt",
        b"DATA\r\n" + b"z" * 2000 + b"\r\n.\r\nNOOP\r\n",
        [rb"354 ", rb"500 Line too long", rb"250 OK"],
    ),
    (
        "SMTPUTF8 address",
        "ehlo",
        "MAIL FROM:<jürgen@bücher.example> SMTPUTF8\r\n".encode(),
        [rb"250 OK"],
    ),
    ("null sender", "ehlo", b"MAIL FROM:<>\r\nRCPT TO:<a@b.c>\r\n", [rb"250 OK", rb"250 OK"]),
    (
        "EHLO twice, then work",
        "ehlo",
        b"EHLO again.test\r\nMAIL FROM:<a@b.c>\r\n",
        [rb"250-mx\.test", rb"250 OK"],
    ),
]


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    from tests.procs import start_daemon, start_edge

    workdir = tmp_path_factory.mktemp("hostile-input")
    policy = workdir / "policy.lua"
    policy.write_text(POLICY)
    daemon, address = start_daemon(policy, workdir)
    edge, port = start_edge(address, workdir)
    yield edge, port, workdir
    edge.stop()
    daemon.stop()


def start(port: int, setup: str) -> RawClient:
    client = RawClient(port)
    assert client.reply().startswith(b"220 ")
    for command in SETUP[setup]:
        assert client.command(command)[:1] in b"23"
    return client


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 50


@pytest.mark.parametrize(("name", "setup", "data", "expected"), CASES, ids=[c[0] for c in CASES])
def test_malformed_input(edge, name, setup, data, expected) -> None:
    _, port, _ = edge
    with start(port, setup) as client:
        client.send(data)
        for pattern in expected:
            reply = client.reply()
            assert re.match(pattern, reply), (pattern, reply)
        if name == "junk pipelined after QUIT":
            assert client.rest_until_close() == b""
        else:  # the session goes on
            assert client.command(b"NOOP") == b"250 OK\r\n"


def test_two_thousand_unknown_commands_are_not_all_answered(edge) -> None:
    """The issue's reproduction: aiosmtpd closed after five unrecognised
    commands; the fork answered all 2,000. The edge is as strict as aiosmtpd."""
    _, port, _ = edge
    with start(port, "ehlo") as client:
        client.send(b"".join(b"XCMD%d\r\n" % n for n in range(2000)))
        got = client.rest_until_close()
    assert got.count(b"\r\n") == 5
    assert got.endswith(b"502 5.5.1 Too many unrecognized commands, goodbye.\r\n")


def test_a_600_octet_mail_from_after_ehlo_is_too_long(edge) -> None:
    """RFC 5321 4.5.3.1.4: 512 octets, plus 36 for SIZE and SMTPUTF8 after EHLO."""
    _, port, _ = edge
    with start(port, "ehlo") as client:
        line = b"MAIL FROM:<" + b"a" * (600 - 24) + b"@b.example>"
        assert len(line) + 2 == 600
        assert client.command(line) == b"500 5.5.2 Command line too long\r\n"
        assert client.command(b"MAIL FROM:<" + b"a" * 500 + b"@b.example>") == b"250 OK\r\n"


def test_the_edge_still_serves_after_the_corpus(edge) -> None:
    proc, port, workdir = edge
    with start(port, "rcpt") as client:
        client.command(b"DATA")
        client.send(b"Subject: after the corpus\r\n\r\n..dot-stuffed\r\n.\r\n")
        assert client.reply().startswith(b"250 OK ids=")
    stored = [entry.message for entry in read_maildir(workdir / "mail")]
    assert stored == [b"Subject: after the corpus\r\n\r\n.dot-stuffed\r\n"]
    assert proc.popen.poll() is None
    assert not [e for e in proc.log_lines() if e.get("level") in ("ERROR", "CRITICAL")]


def test_message_size_limit(stack_factory) -> None:
    stack = stack_factory(POLICY, "--max-message-size", "1000")
    with stack.client() as client:
        client.reply()
        assert b"250-SIZE 1000\r\n" in client.command(b"EHLO client.test")
        assert client.command(b"MAIL FROM:<a@b.c> SIZE=5000") == (
            b"552 5.3.4 Error: message size exceeds fixed maximum message size\r\n"
        )
        client.command(b"MAIL FROM:<a@b.c>")
        client.command(b"RCPT TO:<d@e.f>")
        client.command(b"DATA")
        client.send(b"Subject: big\r\n\r\n" + b"x" * 900 + b"\r\n" + b"y" * 900 + b"\r\n.\r\n")
        assert client.reply() == b"552 5.3.4 Error: message too big\r\n"
        assert client.command(b"NOOP") == b"250 OK\r\n"
    assert stack.stored() == []


def test_recipient_limit(stack_factory) -> None:
    stack = stack_factory(POLICY, "--max-recipients", "3")
    with stack.greeted() as client:
        client.command(b"MAIL FROM:<a@b.c>")
        for n in range(3):
            assert client.command(b"RCPT TO:<r%d@e.f>" % n) == b"250 OK\r\n"
        assert client.command(b"RCPT TO:<r3@e.f>") == b"452 4.5.3 Error: too many recipients\r\n"
        client.command(b"DATA")
        client.send(b"Subject: three\r\n\r\nbody\r\n.\r\n")
        assert client.reply().startswith(b"250 OK ids=")
    accepted = [e for e in stack.edge.log_lines() if e.get("msg") == "accepted"]
    assert sorted(e["recipients"] for e in accepted) == [1, 1, 1]  # one message each


def test_idle_clients_are_closed(stack_factory) -> None:
    stack = stack_factory(POLICY, "--idle-timeout", "0.5")
    with stack.greeted() as client:
        began = time.monotonic()
        assert client.rest_until_close() == b"421 4.4.2 mx.test idle too long\r\n"
        assert time.monotonic() - began < 3


def test_connection_limit(stack_factory) -> None:
    stack = stack_factory(POLICY, "--max-connections", "3")
    held = [stack.greeted() for _ in range(3)]
    with stack.client() as refused:
        assert refused.rest_until_close() == b"421 4.3.2 mx.test too many connections\r\n"
    held.pop().close()
    deadline = time.monotonic() + 5
    while True:  # the freed slot is usable once the edge has seen the close
        client = stack.client()
        banner = client.reply()
        if banner.startswith(b"220 "):
            break
        client.close()
        assert time.monotonic() < deadline
    assert client.command(b"NOOP") == b"250 OK\r\n"
    client.close()
    for c in held:
        c.close()
