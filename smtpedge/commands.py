"""SMTP command lines taken apart: pure functions, one line at a time.

The session (smtp.py) reads a line and hands it here. `split` gives the verb
and its argument; `mail_from` and `rcpt_to` give the address and the ESMTP
parameters of a path argument (RFC 5321 section 4.1.2, with the UTF-8 of
RFC 6531) and check what MAIL FROM's parameters ask for (SIZE, RFC 1870;
BODY, RFC 6152; SMTPUTF8, RFC 6531). Whatever cannot be carried out as
written raises `Refused` with the reply that says why, so the session only
sends it. The replies keep the wording aiosmtpd gave them, which clients and
tests have seen for years.

Paths follow RFC 5321, with the leniencies real mail needs:
- dots anywhere in a dot-string local part (`a..b@`, `a.@`: some mobile
  carriers hand such addresses out), UTF-8 in local parts and domains
  whether or not the client said SMTPUTF8, underscores in domain labels;
- a path without its angle brackets (`MAIL FROM:a@b`), spaces after the
  colon, a tab before the parameters;
- source routes (`<@relay:a@b>`) are accepted and ignored, as RFC 5321 says;
- `<Postmaster>` without a domain as a recipient (RFC 5321 section 4.5.1).
Anything else RFC 5322 would allow but RFC 5321 does not (comments, spaces
inside the brackets, a missing `>`) is a malformed address.
"""

from __future__ import annotations

import re

from policy.mailboxes import DOMAIN, DOT_STRING, MAILBOX, QUOTED, literal_ok

# Syntax errors that are not about a particular command.
CONTROL = "500 5.5.2 Syntax error: control characters in command"
NOT_UTF8 = "500 5.5.2 Syntax error: command is not valid UTF-8"
EMPTY = "500 5.5.2 Syntax error: empty command"
MALFORMED = "553 5.1.3 Error: malformed address"

# Each command's syntax, as HELP gives it and a 501 repeats it; after EHLO, MAIL
# and RCPT take parameters too.
SYNTAX = {
    "AUTH": "AUTH <mechanism>",
    "DATA": "DATA",
    "EHLO": "EHLO hostname",
    "HELO": "HELO hostname",
    "HELP": "HELP [command]",
    "MAIL": "MAIL FROM: <address>",
    "NOOP": "NOOP [ignored]",
    "QUIT": "QUIT",
    "RCPT": "RCPT TO: <address>",
    "RSET": "RSET",
    "STARTTLS": "STARTTLS",
    "VRFY": "VRFY <address>",
}
_WITH_PARAMETERS = ("MAIL", "RCPT")


def syntax(verb: str, extended: bool = False) -> str:
    """A command's syntax; `extended`: after EHLO."""
    if extended and verb in _WITH_PARAMETERS:
        return SYNTAX[verb] + " [SP <mail-parameters>]"
    return SYNTAX[verb]


def syntax_error(verb: str, extended: bool = False) -> str:
    return f"501 Syntax: {syntax(verb, extended)}"


class Refused(Exception):
    """A command that cannot be carried out as written; `reply` says why."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


# Control characters but the tab (a CR inside a line is one, too).
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f]")


def split(line: bytes) -> tuple[str, str | None]:
    """The verb (upper case) and the argument (None when there is none) of a
    command line given without its line ending."""
    if _CONTROL.search(line) is not None:
        raise Refused(CONTROL)
    verb, _, argument = line.partition(b" ")
    try:
        command = verb.decode("ascii").upper()
        text = argument.strip().decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(NOT_UTF8) from None
    if not command:
        raise Refused(EMPTY)
    return command, text or None


_ROUTE = rf"@{DOMAIN}(?:,@{DOMAIN})*:"
_REST = r"(?:[ \t]+(?P<rest>.*))?\Z"
# The usual case, ASCII dot-atoms in brackets, costs one match of this.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE = re.compile(
    rf"<(?P<address>{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9]+(?:[.-][A-Za-z0-9]+)*)>{_REST}"
)
_PATH = re.compile(rf"<(?:{_ROUTE})?(?P<address>{MAILBOX}|(?P<postmaster>(?i:postmaster)))>{_REST}")
_BARE = re.compile(rf"(?P<address>{MAILBOX}){_REST}")
_NULL = re.compile(rf"<>{_REST}")


def parse_path(text: str, *, null: bool = False, postmaster: bool = False) -> tuple[str, str]:
    """The address in a path (`<a@b>`, `a@b`, `<@route:a@b>`; `<>` with `null`, as
    ""; `<Postmaster>` with `postmaster`) and the text after it. Refused otherwise."""
    match = _SIMPLE.match(text)
    if match is not None:
        return match.group("address"), match.group("rest") or ""
    match = _PATH.match(text) or _BARE.match(text)
    if match is None:
        match = _NULL.match(text) if null else None
        if match is None:
            raise Refused(MALFORMED)
        return "", match.group("rest") or ""
    groups = match.groupdict()
    if groups.get("postmaster") is not None and not postmaster:
        raise Refused(MALFORMED)
    if groups["literal"] is not None and not literal_ok(groups["literal"]):
        raise Refused(MALFORMED)
    return groups["address"], groups["rest"] or ""


# RFC 5321 section 4.1.2: esmtp-keyword [= esmtp-value] (after upper-casing).
_PARAMETER = re.compile(r"[A-Z0-9][A-Z0-9-]*(?:=[^=\x00-\x20\x7f]+)?\Z")


def _path_argument(
    argument: str | None, verb: str, keyword: str, extended: bool, *, null: bool
) -> tuple[str, list[str]]:
    """`FROM:<path> params` / `TO:<path> params`: the address and the parameters."""
    error = syntax_error(verb, extended)
    if argument is None or argument[: len(keyword)].upper() != keyword:
        raise Refused(error)
    text = argument[len(keyword) :].lstrip()
    if not text:
        raise Refused(error)
    address, rest = parse_path(text, null=null, postmaster=not null)
    if not rest:
        return address, []
    if not extended:
        raise Refused(error)  # parameters need EHLO
    params = rest.upper().split()
    for param in params:
        if _PARAMETER.match(param) is None:
            raise Refused(error)
    return address, params


BAD_BODY = "501 Error: BODY can only be one of 7BIT, 8BITMIME"
SMTPUTF8_VALUE = "501 Error: SMTPUTF8 takes no arguments"
TOO_BIG = "552 5.3.4 Error: message size exceeds fixed maximum message size"
MAIL_UNKNOWN = "555 MAIL FROM parameters not recognized or not implemented"
RCPT_UNKNOWN = "555 RCPT TO parameters not recognized or not implemented"


def mail_from(argument: str | None, *, extended: bool, size_limit: int) -> tuple[str, list[str]]:
    """The sender ("" for the null path) and the parameters (upper case) of MAIL;
    `extended`: after EHLO (parameters allowed); `size_limit`: 0 for none."""
    sender, params = _path_argument(argument, "MAIL", "FROM:", extended, null=True)
    if not params:
        return sender, params
    values = {keyword: (value if equals else None) for keyword, equals, value in
              (param.partition("=") for param in params)}  # fmt: skip
    if values.pop("BODY", "7BIT") not in ("7BIT", "8BITMIME"):
        raise Refused(BAD_BODY)
    if values.pop("SMTPUTF8", None) is not None:
        raise Refused(SMTPUTF8_VALUE)
    if "SIZE" in values:
        size = values.pop("SIZE") or ""
        if not (size.isascii() and size.isdigit()):
            raise Refused(syntax_error("MAIL", extended=True))
        if size_limit and int(size) > size_limit:
            raise Refused(TOO_BIG)
    if values:
        raise Refused(MAIL_UNKNOWN)
    return sender, params


def rcpt_to(argument: str | None, *, extended: bool) -> tuple[str, list[str]]:
    """The recipient and the parameters of RCPT (none are supported)."""
    recipient, params = _path_argument(argument, "RCPT", "TO:", extended, null=False)
    if params:
        raise Refused(RCPT_UNKNOWN)
    return recipient, params


_LOCAL_PART = re.compile(rf"(?:{DOT_STRING}|{QUOTED})\Z")


def vrfy_address(argument: str) -> str | None:
    """What VRFY asks about (a path, or a user name as RFC 5321 section 3.5
    allows), or None when it is neither."""
    try:
        return parse_path(argument, postmaster=True)[0]
    except Refused:
        return argument if _LOCAL_PART.match(argument) else None
