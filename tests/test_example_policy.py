"""examples/policy.lua does what its comments and the README say."""

from __future__ import annotations

import shutil
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mailstore import read_maildir
from tests.smtpclient import send_message
from tests.test_dns import DnsServer

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "policy.lua"


@pytest.fixture
def example(stack_factory):
    return stack_factory(EXAMPLE.read_text())


def test_accepts_and_marks_local_mail(example) -> None:
    body = b"Subject: hi\r\nX-Internal: secret\r\n\r\nhello\r\n"
    with smtplib.SMTP("127.0.0.1", example.port, timeout=10) as smtp:
        smtp.sendmail("alice@sender.example", ["bob@example.com"], body)
        assert smtp.sock is not None
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


RBL_EXAMPLE = EXAMPLE.parent / "rbl.lua"


def policyctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "policyd.ctl", *args], capture_output=True, text=True, timeout=60
    )


def test_the_dns_example_passes_its_tests_with_the_dns_answers_they_give() -> None:
    result = policyctl("test", str(RBL_EXAMPLE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 passed, 0 failed" in result.stdout
    assert "smtp_server_connection_accepted: 10/10 lines run" in result.stdout


def test_dns_answers_in_test_cases_decide_the_outcome(tmp_path) -> None:
    """The same cases with one answer changed: the block-list case now fails,
    showing what the policy got instead."""
    shutil.copy(RBL_EXAMPLE, tmp_path / "rbl.lua")
    tests = (EXAMPLE.parent / "rbl.tests.toml").read_text()
    listing = '"66.2.0.192.zen.spamhaus.org" = { A = ["127.0.0.2"]'
    assert listing in tests
    (tmp_path / "rbl.tests.toml").write_text(tests.replace(listing, listing.replace("66.", "67.")))
    result = policyctl("test", str(tmp_path / "rbl.lua"))
    assert result.returncode == 1
    assert "FAIL rbl.tests.toml:11 a client on the block list is refused" in result.stdout
    assert "+ got:      continue" in result.stdout
    # A malformed DNS table is reported, not guessed at.
    (tmp_path / "rbl.tests.toml").write_text('[dns]\n"x.example" = { CNAME = ["y."] }\n')
    broken = policyctl("test", str(tmp_path / "rbl.lua"))
    assert broken.returncode == 2
    assert "unknown record types ['CNAME']" in broken.stdout + broken.stderr


AUTH_EXAMPLE = EXAMPLE.parent / "auth.lua"


def test_the_auth_example_passes_its_tests() -> None:
    result = policyctl("test", str(AUTH_EXAMPLE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed, 0 failed" in result.stdout


def test_the_auth_example_through_the_edge(tmp_path, servers) -> None:
    dns = DnsServer(
        tmp_path,
        {
            "example.com": {"TXT": [["v=spf1 ip4:127.0.0.1 -all"]]},
            "_dmarc.example.com": {"TXT": [["v=DMARC1; p=reject"]]},
        },
    )
    try:
        _, address = servers.daemon(AUTH_EXAMPLE, tmp_path, "--dns-server", dns.address)
        _, port = servers.edge(address, tmp_path)
        body = b"From: Alice <alice@example.com>\r\nSubject: hi\r\n\r\nbody\r\n"
        reply = send_message(port, body, b"alice@example.com", helo=b"mail.example.com")
        assert reply.startswith(b"250 OK ids=")
        (stored,) = read_maildir(tmp_path / "mail")
        assert stored.message == (
            b"Authentication-Results: mx.test;\r\n"
            b"\tspf=pass reason=\"matched 'ip4:127.0.0.1' directive\"\r\n"
            b"\tsmtp.helo=mail.example.com\r\n\tsmtp.mailfrom=alice@example.com;\r\n"
            b'\tdmarc=pass reason="SPF aligned with the From domain"\r\n'
            b"\theader.from=example.com\r\n"
            b"From: Alice <alice@example.com>\r\nSubject: hi\r\n\r\nbody\r\n"
        )
    finally:
        dns.proc.stop()
