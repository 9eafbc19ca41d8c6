"""examples/policy.lua does what its comments and the README say."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "policy.lua"


@pytest.fixture
def example(stack_factory):
    return stack_factory(EXAMPLE.read_text())


def test_accepts_and_marks_local_mail(example) -> None:
    body = b"Subject: hi\r\nX-Internal: secret\r\n\r\nhello\r\n"
    with smtplib.SMTP("127.0.0.1", example.port, timeout=10) as smtp:
        smtp.sendmail("alice@sender.example", ["bob@example.com"], body)
        peer = "{}:{}".format(*smtp.sock.getsockname())
    (stored,) = example.stored()
    assert (
        stored
        == f"X-Policy-Checked: mx.test for {peer}\r\n".encode() + b"Subject: hi\r\n\r\nhello\r\n"
    )


def test_each_kind_of_refusal(example) -> None:
    with example.greeted() as c:
        assert c.command(b"MAIL FROM:<x@spam.example>") == (
            b"550 5.7.1 mail from spam.example is not accepted here\r\n"
        )
        assert c.command(b"MAIL FROM:<greylist-me@a.example>") == b"451 4.7.1 try again later\r\n"
        assert c.command(b"MAIL FROM:<ok@a.example>") == b"250 OK\r\n"
        assert c.command(b"RCPT TO:<x@elsewhere.example>") == (
            b"550 5.7.1 relaying to elsewhere.example is not allowed\r\n"
        )
        assert c.command(b"RCPT TO:<bob@example.com>") == b"250 OK\r\n"
        c.command(b"DATA")
        c.send(b"From: ok@a.example\r\n\r\nno subject\r\n.\r\n")
        assert c.reply() == (
            b"554-5.6.0 a Subject header is required\r\n554 see https://example.com/policy\r\n"
        )
        assert c.command(b"MAIL FROM:<ok@a.example>") == b"250 OK\r\n"
        c.send(b"RCPT TO:<spamtrap@example.com>\r\nNOOP\r\n")
        assert c.rest_until_close() == b"554 5.7.1 go away\r\n"
    with example.greeted() as c:
        c.send(b"MAIL FROM:<abuse@a.example>\r\n")
        assert c.rest_until_close() == b"421 4.7.0 mx.test closing connection\r\n"
    with example.client() as c:
        c.reply()
        c.send(b"EHLO MX.TEST\r\n")
        assert c.rest_until_close() == (
            b"550 5.7.1 you are not me\r\n421 mx.test disconnecting due to previous error\r\n"
        )
    assert example.stored() == []
