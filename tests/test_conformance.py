"""msg:check_fix_conformance: KumoMTA's conformance flags found in messages,
its check-then-fix order, the fixes (missing headers set in place, anything
else rebuilt), and the method through the daemon and edge over SMTP."""

from __future__ import annotations

import email
import re
from email.message import MIMEPart
from email.policy import default

import pytest

from policyd.conformance import (
    NONE,
    Issue,
    Settings,
    check_fix,
    issue_names,
    parse_issues,
    scan,
    settings_from,
)
from tests.smtpclient import send_message

HEADERS = (
    b"Date: Fri, 4 Dec 2026 21:00:00 +0000\r\nMessage-ID: <a@b.example>\r\nMIME-Version: 1.0\r\n"
)
CLEAN = HEADERS + b"Subject: hi\r\n\r\nbody\r\n"
ALL = parse_issues("|".join(i.name or "" for i in Issue))
SETTINGS = Settings(message_id="id@example.com")


@pytest.mark.parametrize(
    ("message", "found"),
    [
        (CLEAN, ""),
        (HEADERS + b"Subject\r\n\r\nx\r\n", "MISSING_COLON_VALUE"),
        (HEADERS + b"Subject : hi\r\n\r\nx\r\n", "NAME_ENDS_WITH_SPACE"),
        (HEADERS + b"Subject: hi\n\nx\n", "NON_CANONICAL_LINE_ENDINGS"),
        (HEADERS + b"Subject: hi\r\n\r\nlone\rCR\r\n", "NON_CANONICAL_LINE_ENDINGS"),
        (HEADERS + b"Subject: hi\r\n\r\n" + b"x" * 77 + b"\r\n", "LINE_TOO_LONG"),
        (HEADERS + b"Subject: hi\r\n\r\n" + b"x" * 76 + b"\r\n", ""),
        (HEADERS + b"Subject: \xc2\xa3\r\n\r\nx\r\n", "NEEDS_TRANSFER_ENCODING"),
        (HEADERS.replace(b"Date", b"X-Date") + b"\r\nx\r\n", "MISSING_DATE_HEADER"),
        (HEADERS.replace(b"4 Dec", b"the 4th of") + b"\r\nx\r\n", "MISSING_DATE_HEADER"),
        (HEADERS.replace(b"<a@b.example>", b"<<a@b>>") + b"\r\nx\r\n", "MISSING_MESSAGE_ID_HEADER"),
        (HEADERS.replace(b"1.0", b"2.0") + b"\r\nx\r\n", "MISSING_MIME_VERSION"),
        (HEADERS.replace(b"1.0", b"1.0 (produced by x)") + b"\r\nx\r\n", ""),
        (HEADERS + b"Content-Transfer-Encoding: bogus\r\n\r\nx\r\n", "INVALID_MIME_HEADERS"),
        (HEADERS + b"Content-Type: text\r\n\r\nx\r\n", "INVALID_MIME_HEADERS"),
    ],
)
def test_each_issue_is_found(message: bytes, found: str) -> None:
    assert issue_names(scan(message).issues) == found


MULTIPART = (
    HEADERS + b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\npreamble\r\n'
    b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
    b"\r\nh\xc3\xa9llo\r\n"
    b"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: bogus\r\n"
    b"Bad : name\r\n\r\nabc\r\n--XX--\r\n"
)


def test_parts_of_a_multipart_message_are_scanned_too() -> None:
    assert issue_names(scan(MULTIPART).issues) == (
        "INVALID_MIME_HEADERS|NAME_ENDS_WITH_SPACE|NEEDS_TRANSFER_ENCODING"
    )


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (b" Subject: x\r\n\r\n", "the header section starts with white space"),
        (b"Subject: x\r\nA\rB: y\r\n\r\n", "is not printable US-ASCII"),
        (b"Subject: x\r\n\rB\r\n", "lone CR in the header section"),
    ],
)
def test_a_message_that_cannot_be_read_is_a_problem_not_an_exception(
    message: bytes, error: str
) -> None:
    fixed, problem = check_fix(message, NONE, ALL, SETTINGS)
    assert fixed is None
    assert problem is not None and problem.startswith("failed to parse the message: ")
    assert error in problem


def test_unknown_flags_are_refused_naming_every_possible_value() -> None:
    assert parse_issues("") == NONE
    assert parse_issues("LINE_TOO_LONG||MISSING_DATE_HEADER") == (
        Issue.LINE_TOO_LONG | Issue.MISSING_DATE_HEADER
    )
    with pytest.raises(ValueError) as raised:
        parse_issues("LINE_TOO_LONG|line_too_long")
    assert str(raised.value) == (
        "invalid MessageConformance flag 'line_too_long', possible values are "
        "'INVALID_MIME_HEADERS', 'LINE_TOO_LONG', 'MISSING_COLON_VALUE', 'MISSING_DATE_HEADER', "
        "'MISSING_MESSAGE_ID_HEADER', 'MISSING_MIME_VERSION', 'NAME_ENDS_WITH_SPACE', "
        "'NEEDS_TRANSFER_ENCODING', 'NON_CANONICAL_LINE_ENDINGS'"
    )


def test_checks_report_only_what_is_not_being_fixed() -> None:
    message = b"Subject : hi\r\n\r\nbody\r\n"
    checks = parse_issues("NAME_ENDS_WITH_SPACE|MISSING_DATE_HEADER|LINE_TOO_LONG")
    assert check_fix(message, checks, NONE, SETTINGS) == (
        None,
        "Message has conformance issues: MISSING_DATE_HEADER|NAME_ENDS_WITH_SPACE",
    )
    assert check_fix(message, checks, Issue.MISSING_DATE_HEADER, SETTINGS) == (
        None,
        "Message has conformance issues: NAME_ENDS_WITH_SPACE",
    )
    assert check_fix(CLEAN, ALL, ALL, SETTINGS) == (None, None)


def test_missing_headers_alone_are_set_in_place_leaving_the_rest_as_it_was() -> None:
    message = b"From :a@b.example\r\nMIME-Version: 2.0\r\nSubject: hi\r\n\r\nbody\n"
    fixed, problem = check_fix(message, NONE, MISSING_ONLY, SETTINGS)
    assert problem is None and fixed is not None
    head, body = fixed.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[:3] == [b"From :a@b.example", b"MIME-Version: 1.0", b"Subject: hi"]
    assert re.fullmatch(rb"Date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d \+0000", lines[3])
    assert lines[4:] == [b"Message-ID: <id@example.com>"]
    assert body == b"body\n"
    assert scan(fixed).issues & MISSING_ONLY == NONE


MISSING_ONLY = parse_issues("MISSING_DATE_HEADER|MISSING_MESSAGE_ID_HEADER|MISSING_MIME_VERSION")


def test_a_message_of_headers_alone_gets_its_missing_headers_after_them() -> None:
    fixed, _ = check_fix(b"Subject: hi", NONE, Issue.MISSING_MIME_VERSION, SETTINGS)
    assert fixed == b"Subject: hi\r\nMIME-Version: 1.0\r\n"


def text_of(part: MIMEPart) -> str:
    """A text part's content, with the CRLF line endings of the stored bytes as LF."""
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def test_other_fixes_rebuild_the_message_as_clean_mime() -> None:
    message = (
        b"Subject : caf\xc3\xa9\nMessage-ID: <<1234@example.com>>\nNoColon\n\n"
        + b"Hello this is a long line " * 6
        + b"\n"
    )
    fixed, problem = check_fix(message, Issue.MISSING_COLON_VALUE, ALL, SETTINGS)
    assert problem is None and fixed is not None
    assert issue_names(scan(fixed).issues) == ""
    parsed = email.message_from_bytes(fixed, policy=default)
    assert parsed["Subject"] == "café"
    assert b"Subject: =?utf-8?q?caf=C3=A9?=\r\n" in fixed
    assert parsed["Message-ID"] == "<id@example.com>"
    assert parsed["NoColon"] == ""
    assert parsed["Content-Transfer-Encoding"] == "quoted-printable"
    assert text_of(parsed) == (b"Hello this is a long line " * 6).decode() + "\n"


def test_rebuilt_parts_are_re_encoded_and_invalid_encodings_replaced() -> None:
    fixed, problem = check_fix(MULTIPART, NONE, ALL, SETTINGS)
    assert problem is None and fixed is not None
    assert issue_names(scan(fixed).issues) == ""
    text, binary = email.message_from_bytes(fixed, policy=default).iter_parts()
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert text_of(text) == "héllo"
    assert binary["Content-Transfer-Encoding"] == "7bit"
    assert binary["Bad"] == "name"
    assert binary.get_content() == b"abc"


def test_8bit_content_is_decoded_lossily_or_by_the_detected_charset() -> None:
    message = b"Subject: \xa3\r\n\r\nGBP \xa3\r\n"
    lossy, _ = check_fix(message, NONE, Issue.NEEDS_TRANSFER_ENCODING, SETTINGS)
    assert lossy is not None
    assert email.message_from_bytes(lossy, policy=default)["Subject"] == "\ufffd"
    latin = Settings("x@y", detect_encoding=True, include_encodings=("iso-8859-1",))
    detected, _ = check_fix(message, NONE, Issue.NEEDS_TRANSFER_ENCODING, latin)
    assert detected is not None
    parsed = email.message_from_bytes(detected, policy=default)
    assert (parsed["Subject"], text_of(parsed)) == ("£", "GBP £\n")


def test_settings_default_to_none_and_the_given_message_id() -> None:
    assert settings_from(None, "i@d") == Settings("i@d")
    assert settings_from({"message_id": "m@x", "include_encodings": {}}, "i@d") == Settings("m@x")


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ({"detect_encodings": True}, "unknown setting 'detect_encodings'"),
        ({"detect_encoding": "yes"}, "detect_encoding must be a boolean"),
        ({"include_encodings": "latin1"}, "include_encodings must be a list"),
        ({"message_id": "<a@b>"}, "message_id must be ASCII"),
    ],
)
def test_bad_settings_are_refused(given: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        settings_from(given, "i@d")


def send(port: int, body: bytes) -> bytes:
    return send_message(port, body, b"s@sender.example", (b"r@example.com",))


DOCUMENTED = r"""
kumo.on('smtp_server_message_received', function(msg)
  local failed = msg:check_fix_conformance(
    'MISSING_COLON_VALUE',
    'LINE_TOO_LONG|NAME_ENDS_WITH_SPACE|NEEDS_TRANSFER_ENCODING|NON_CANONICAL_LINE_ENDINGS'
      .. '|MISSING_DATE_HEADER|MISSING_MESSAGE_ID_HEADER|MISSING_MIME_VERSION')
  if failed then
    kumo.reject(552, string.format('5.6.0 %s', failed))
  end
end)
"""


def test_the_documented_policy_rejects_and_fixes_over_smtp(stack_factory) -> None:
    stack = stack_factory(DOCUMENTED)
    assert send(stack.port, b"Subject\r\n\r\nbody\r\n") == (
        b"552 5.6.0 Message has conformance issues: MISSING_COLON_VALUE\r\n"
    )
    assert send(stack.port, b"Subject : hi\r\n\r\nbody\r\n").startswith(b"250 ")
    (entry,) = stack.stored_entries()
    stored = email.message_from_bytes(entry.message, policy=default)
    assert stored["Subject"] == "hi"
    assert re.fullmatch(r"<[0-9a-f]{32}@sender\.example>", stored["Message-ID"])
    assert stored["MIME-Version"] == "1.0" and stored["Date"]
    assert issue_names(scan(entry.message).issues) == ""


def test_bad_flags_are_a_policy_error_naming_the_method(stack_factory) -> None:
    stack = stack_factory(
        "kumo.on('smtp_server_data', function(msg) msg:check_fix_conformance('', 'FIX_ALL') end)"
    )
    assert send(stack.port, b"Subject: x\r\n\r\nbody\r\n") == (
        b"421 4.3.0 mx.test technical difficulties\r\n"
    )
    (error,) = [e for e in stack.daemon.log_lines() if e.get("msg") == "policy error"]
    assert "msg:check_fix_conformance: invalid MessageConformance flag 'FIX_ALL'" in error["error"]
    assert stack.stored_entries() == []


SMUGGLING = r"""
kumo.on('smtp_server_message_received', function(msg)
  local failed = msg:check_fix_conformance('NON_CANONICAL_LINE_ENDINGS', '')
  if failed then
    kumo.reject(552, string.format('5.6.0 %s', failed))
  end
end)
"""


def test_the_canonical_smuggling_defence_refuses_bare_line_feeds(stack_factory) -> None:
    """KumoMTA's configuration guide's check: a smuggled second message behind
    `\\n.\\n` stays inside the first, which is refused; honest mail passes."""
    stack = stack_factory(SMUGGLING)
    smuggled = (
        b"Subject: first\r\n\r\nhello\n.\nMAIL FROM:<evil@example.com>\r\n"
        b"RCPT TO:<r@example.com>\r\nDATA\r\nSubject: spoofed\r\n\r\nx\r\n"
    )
    assert send(stack.port, smuggled) == (
        b"552 5.6.0 Message has conformance issues: NON_CANONICAL_LINE_ENDINGS\r\n"
    )
    assert send(stack.port, b"Subject: honest\r\n\r\nhello\r\n").startswith(b"250 OK ids=")
    (entry,) = stack.stored_entries()
    assert entry.message == b"Subject: honest\r\n\r\nhello\r\n"
