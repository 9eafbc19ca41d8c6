"""Command lines, MAIL FROM / RCPT TO arguments and message data, taken apart:
the pure functions of smtpedge/commands.py and connection.py, as literal tables.

Replies keep aiosmtpd's wording (what clients and this project's tests have
always seen); where the edge checks more than aiosmtpd did, the row says so.
"""

from __future__ import annotations

import pytest

from smtpedge.commands import Refused, mail_from, rcpt_to, split, vrfy_address
from smtpedge.connection import lines_fit, unstuff
from smtpedge.relay import dot_stuff

CONTROL = "500 5.5.2 Syntax error: control characters in command"
NOT_UTF8 = "500 5.5.2 Syntax error: command is not valid UTF-8"
EMPTY = "500 5.5.2 Syntax error: empty command"
MAIL_SYNTAX = "501 Syntax: MAIL FROM: <address>"
MAIL_SYNTAX_EHLO = "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]"
RCPT_SYNTAX = "501 Syntax: RCPT TO: <address>"
RCPT_SYNTAX_EHLO = "501 Syntax: RCPT TO: <address> [SP <mail-parameters>]"
MALFORMED = "553 5.1.3 Error: malformed address"
BAD_BODY = "501 Error: BODY can only be one of 7BIT, 8BITMIME"


def outcome(call, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except Refused as e:
        return e.reply


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"NOOP", ("NOOP", None)),
        (b"noop", ("NOOP", None)),
        (b"MAIL FROM:<a@b>", ("MAIL", "FROM:<a@b>")),
        (b"mail from:<a@b>", ("MAIL", "from:<a@b>")),  # the argument keeps its case
        (b"EHLO   client.test  ", ("EHLO", "client.test")),
        (b"NOOP ", ("NOOP", None)),
        (b"RCPT TO:<a@b>\tNOTIFY=NEVER", ("RCPT", "TO:<a@b>\tNOTIFY=NEVER")),
        ("MAIL FROM:<jürgen@bücher.example>".encode(), ("MAIL", "FROM:<jürgen@bücher.example>")),
        (b"\tNOOP", ("\tNOOP", None)),  # a tab is no separator: an unknown verb
        (b"", EMPTY),
        (b"    ", EMPTY),
        (b" NOOP", EMPTY),
        (b"NO\x00OP", CONTROL),
        (b"NO\rOP", CONTROL),
        (b"\x1b[31mEHLO x", CONTROL),
        (b"MAIL FROM:<a\x00b@x>", CONTROL),
        (b"\xff\xfe", NOT_UTF8),
        (b"EHLO \xc3\x28", NOT_UTF8),
        (b"MAIL FROM:<\xe9@x>", NOT_UTF8),
        (b"MAIL FROM:<\xc0\xaf@x>", NOT_UTF8),  # an overlong UTF-8 sequence
        (b"N\xc3\xa9OP", NOT_UTF8),  # verbs are ASCII
    ],
)
def test_split(line: bytes, expected) -> None:
    assert outcome(split, line) == expected


# (argument of MAIL, after EHLO?, size limit) -> (sender, parameters) or the reply
MAIL: list[tuple[str | None, bool, int, object]] = [
    ("FROM:<a@b.c>", True, 0, ("a@b.c", [])),
    ("FROM: <a@b.c>", True, 0, ("a@b.c", [])),  # a space after the colon, as many send
    ("from:<a@b.c>", True, 0, ("a@b.c", [])),
    ("FROM:<>", True, 0, ("", [])),
    ("FROM:<> SIZE=0", True, 0, ("", ["SIZE=0"])),
    ("FROM:<a@b.c> SIZE=1000", True, 1000, ("a@b.c", ["SIZE=1000"])),
    ("FROM:<a@b.c> size=10 body=8bitmime smtputf8", True, 0,
     ("a@b.c", ["SIZE=10", "BODY=8BITMIME", "SMTPUTF8"])),
    ("FROM:<a@b.c> BODY=7BIT", True, 0, ("a@b.c", ["BODY=7BIT"])),
    ("FROM:<a@b.c> SIZE=1001", True, 1000,
     "552 5.3.4 Error: message size exceeds fixed maximum message size"),
    ("FROM:<a@b.c> SIZE=99999999999", True, 0, ("a@b.c", ["SIZE=99999999999"])),  # no limit
    ("FROM:<a@b.c> SIZE=abc", True, 0, MAIL_SYNTAX_EHLO),
    ("FROM:<a@b.c> SIZE", True, 0, MAIL_SYNTAX_EHLO),
    ("FROM:<a@b.c> SIZE=-1", True, 0, MAIL_SYNTAX_EHLO),
    ("FROM:<a@b.c> SIZE=", True, 0, MAIL_SYNTAX_EHLO),
    ("FROM:<a@b.c> BODY=9BIT", True, 0, BAD_BODY),
    ("FROM:<a@b.c> BODY", True, 0, BAD_BODY),
    ("FROM:<a@b.c> SMTPUTF8=YES", True, 0, "501 Error: SMTPUTF8 takes no arguments"),
    ("FROM:<a@b.c> FOO=bar", True, 0, "555 MAIL FROM parameters not recognized or not implemented"),
    # RFC 5321 keywords may have hyphens (aiosmtpd called them a syntax error).
    ("FROM:<a@b.c> MT-PRIORITY=3", True, 0,
     "555 MAIL FROM parameters not recognized or not implemented"),
    ("FROM:<a@b.c> BODY=9BIT FOO=bar", True, 0, BAD_BODY),
    ("FROM:<a@b.c> -X=1", True, 0, MAIL_SYNTAX_EHLO),
    ("FROM:<a@b.c> A=B=C", True, 0, MAIL_SYNTAX_EHLO),  # RFC 5321: no "=" in a value
    ("FROM:<a@b.c> SIZE=10", False, 0, MAIL_SYNTAX),  # parameters need EHLO
    (None, True, 0, MAIL_SYNTAX_EHLO),
    (None, False, 0, MAIL_SYNTAX),
    ("FROM:", True, 0, MAIL_SYNTAX_EHLO),
    ("FROM <a@b.c>", True, 0, MAIL_SYNTAX_EHLO),
    ("TO:<a@b.c>", True, 0, MAIL_SYNTAX_EHLO),
    ("FROM:<<<@>>>", True, 0, MALFORMED),
    ("FROM:<a@b.c>junk", True, 0, MALFORMED),
    ("FROM:<postmaster>", True, 0, MALFORMED),
]  # fmt: skip


@pytest.mark.parametrize(("argument", "extended", "size_limit", "expected"), MAIL)
def test_mail_from(argument, extended, size_limit, expected) -> None:
    assert outcome(mail_from, argument, extended=extended, size_limit=size_limit) == expected


RCPT: list[tuple[str | None, bool, object]] = [
    ("TO:<a@b.c>", True, ("a@b.c", [])),
    ("TO: <a@b.c>", False, ("a@b.c", [])),
    ("to:<Postmaster>", True, ("Postmaster", [])),
    ("TO:<@relay.example:a@b.c>", True, ("a@b.c", [])),
    ("TO:<>", True, MALFORMED),  # aiosmtpd passed "<>" on as the recipient
    ("TO:<@@@>", True, MALFORMED),
    ("TO:<a@b.c> NOTIFY=NEVER", True, "555 RCPT TO parameters not recognized or not implemented"),
    ("TO:<a@b.c> NOTIFY=NEVER", False, RCPT_SYNTAX),
    ("TO:<a@b.c> NOT(IFY", True, RCPT_SYNTAX_EHLO),
    (None, True, RCPT_SYNTAX_EHLO),
    ("TO:", False, RCPT_SYNTAX),
    ("FROM:<a@b.c>", True, RCPT_SYNTAX_EHLO),
]  # fmt: skip


@pytest.mark.parametrize(("argument", "extended", "expected"), RCPT)
def test_rcpt_to(argument, extended, expected) -> None:
    assert outcome(rcpt_to, argument, extended=extended) == expected


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("<a@b.c>", "a@b.c"),
        ("a@b.c", "a@b.c"),
        ("postmaster", "postmaster"),  # a user name (RFC 5321 section 3.5)
        ("<Postmaster>", "Postmaster"),
        ('"John Smith"', '"John Smith"'),
        ("<<<", None),
        ("a b", None),
    ],
)
def test_vrfy_address(argument: str, expected: str | None) -> None:
    assert vrfy_address(argument) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", b""),
        (b"body\r\n", b"body\r\n"),
        (b"..leading\r\n", b".leading\r\n"),
        (b"a\r\n..b\r\n...c\r\n", b"a\r\n.b\r\n..c\r\n"),
        (b".x\r\n", b"x\r\n"),  # an unstuffed leading dot is dropped (RFC 5321 4.5.2)
        (b"a\n.b\r\n", b"a\n.b\r\n"),  # only after CRLF
        (b"a.\r\nb.\r\n", b"a.\r\nb.\r\n"),
    ],
)
def test_unstuff(raw: bytes, message: bytes) -> None:
    assert unstuff(raw) == message


@pytest.mark.parametrize(
    ("raw", "fits"),
    [
        (b"", True),
        (b"x" * 999 + b"\r\n", True),  # 1001 octets: 998, CRLF and a transparency dot
        (b"x" * 1000 + b"\r\n", False),
        (b"short\r\n" + b"y" * 999 + b"\r\nshort\r\n", True),
        (b"short\r\n" + b"y" * 1000 + b"\r\nshort\r\n", False),
        (b"z" * 5000, False),
        ((b"x" * 900 + b"\r\n") * 20, True),
    ],
)
def test_lines_fit(raw: bytes, fits: bool) -> None:
    assert lines_fit(raw) is fits


@pytest.mark.parametrize(
    ("message", "sent"),
    [
        (b"", b"\r\n.\r\n"),
        (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
        (b"a\r\nb", b"a\r\nb\r\n.\r\n"),
        (b".a\r\n.\r\n..b\r\n", b"..a\r\n..\r\n...b\r\n.\r\n"),
        # What the edge keeps inside a message (a bare LF never ends it there) must not
        # end it at an upstream that takes bare LF for a line end: smuggling.
        (b"x\n.\nMAIL FROM:<evil@x.example>\n", b"x\r\n..\r\nMAIL FROM:<evil@x.example>\r\n.\r\n"),
        (b"x\r.\rRSET\r", b"x\r\n..\r\nRSET\r\n.\r\n"),
    ],
    ids=["empty", "lines", "no-final-crlf", "dots", "bare-lf", "bare-cr"],
)
def test_dot_stuffing_for_the_upstream(message: bytes, sent: bytes) -> None:
    assert dot_stuff(message) == sent
