"""Header values as KumoMTA reads and writes them: RFC 2047 encoded words
decoded for the header getters, and the ENCODE flag of prepend_header and
append_header (also the fallback of a rebuilt message's folding). Through the
standard library's public email API."""

from __future__ import annotations

from email.charset import QP, Charset
from email.errors import HeaderParseError
from email.header import Header, decode_header, make_header


def decoded(value: str) -> str:
    """A header value with its RFC 2047 encoded words decoded (as it is when
    they do not decode)."""
    try:
        return str(make_header(decode_header(value)))
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
        return value


_UTF8_QP = Charset("utf-8")
_UTF8_QP.header_encoding = QP
HARD_WRAP = 900


def encoded(name: str, value: str) -> str:
    """KumoMTA's ENCODE: ASCII folded at whitespace near 75 columns (and cut at
    900 whatever the whitespace), anything else as RFC 2047 quoted-printable
    encoded words; folds are CRLF and a space, so the value stays one field."""
    if value.isascii():
        text = Header(value, "us-ascii", header_name=name).encode(linesep="\r\n")
        lines = [line.removeprefix(" ") for line in text.split("\r\n")]
        cuts = ((line, range(0, len(line), HARD_WRAP)) for line in lines if line)
        pieces = [line[i : i + HARD_WRAP] for line, starts in cuts for i in starts]
        return "\r\n ".join(pieces)
    return Header(value, _UTF8_QP, header_name=name).encode(linesep="\r\n")
