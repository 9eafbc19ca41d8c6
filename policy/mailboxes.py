"""Mailboxes as RFC 5321 section 4.1.2 writes them (with RFC 6531's UTF-8 and
the leniencies real mail needs, see smtpedge/commands.py), for the edge's
command parser and for envelopes a policy sets: pure."""

from __future__ import annotations

import ipaddress
import re

# RFC 5321 section 4.1.2, with RFC 6531's UTF-8 (any non-ASCII character).
UTF8 = "\u0080-\U0010ffff"
ATEXT = rf"A-Za-z0-9!#$%&'*+/=?^_`{{|}}~\-{UTF8}"
DOT_STRING = rf"\.*[{ATEXT}][{ATEXT}.]*"  # at least one atext, dots anywhere
QUOTED = rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{UTF8}]|\\[\x20-\x7e])*"'
LABEL = rf"[A-Za-z0-9_{UTF8}](?:[A-Za-z0-9_\-{UTF8}]*[A-Za-z0-9_{UTF8}])?"
DOMAIN = rf"{LABEL}(?:\.{LABEL})*"
LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"  # checked further by literal_ok
MAILBOX = rf"(?:{DOT_STRING}|{QUOTED})@(?:{DOMAIN}|(?P<literal>{LITERAL}))"
_GENERAL_LITERAL = re.compile(r"[A-Za-z0-9-]*[A-Za-z0-9]:[\x21-\x5a\x5e-\x7e]+\Z")


def literal_ok(literal: str) -> bool:
    """An address literal's content: IPv4, `IPv6:` and an IPv6 address, or a
    general `tag:content` one (RFC 5321 section 4.1.3)."""
    content = literal[1:-1]
    if content[:5].upper() == "IPV6:":
        try:
            ipaddress.IPv6Address(content[5:])
        except ValueError:
            return False
        return True
    if content[:1].isdigit():
        try:
            ipaddress.IPv4Address(content)
        except ValueError:
            return False
        return True
    return _GENERAL_LITERAL.match(content) is not None


_WHOLE = re.compile(rf"{MAILBOX}\Z")


def is_mailbox(text: str) -> bool:
    """Whether text is one mailbox (`local@domain`, no brackets, nothing else)."""
    match = _WHOLE.match(text)
    return match is not None and (match["literal"] is None or literal_ok(match["literal"]))
