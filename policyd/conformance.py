"""msg:check_fix_conformance: the conformance issues KumoMTA finds in a message
(RFC 5322 header syntax, line endings and lengths, 8-bit content, the Date,
Message-ID and MIME-Version headers, MIME headers that do not parse), and its
fix: missing headers are set in place, anything else rebuilds the message as a
clean MIME tree (CRLF, header names repaired, 8-bit or long-lined parts
re-encoded, headers refolded) and then sets the missing headers.

Pure: bytes in, bytes out. The scan is our own lenient reader of the header
sections and the multipart structure, so that it sees what a strict parser
would hide; the rebuild uses the standard library's email package.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import errors as email_errors
from email.charset import QP, Charset
from email.generator import Generator
from email.message import Message
from email.parser import Parser
from email.policy import EmailPolicy, default
from email.utils import format_datetime, parsedate_to_datetime
from enum import Flag, auto
from io import StringIO
from typing import Any

from charset_normalizer import from_bytes

from policyd.header_values import encoded


class Issue(Flag):
    """KumoMTA's MessageConformance flags (their names are the API)."""

    MISSING_COLON_VALUE = auto()
    NON_CANONICAL_LINE_ENDINGS = auto()
    NAME_ENDS_WITH_SPACE = auto()
    LINE_TOO_LONG = auto()
    NEEDS_TRANSFER_ENCODING = auto()
    MISSING_DATE_HEADER = auto()
    MISSING_MESSAGE_ID_HEADER = auto()
    MISSING_MIME_VERSION = auto()
    INVALID_MIME_HEADERS = auto()


NONE = Issue(0)
MISSING_HEADERS = (
    Issue.MISSING_DATE_HEADER | Issue.MISSING_MESSAGE_ID_HEADER | Issue.MISSING_MIME_VERSION
)
_NAMES = sorted(i.name for i in Issue if i.name)


def parse_issues(text: str) -> Issue:
    """A set of issues written as KumoMTA does, `NAME|NAME` (empty for none);
    ValueError naming the possible values for anything else."""
    issues = NONE
    for name in text.split("|"):
        if not name:
            continue
        if name not in Issue.__members__:
            possible = ", ".join(f"'{n}'" for n in _NAMES)
            raise ValueError(
                f"invalid MessageConformance flag '{name}', possible values are {possible}"
            )
        issues |= Issue[name]
    return issues


def issue_names(issues: Issue) -> str:
    """The issues as KumoMTA prints them: names sorted, joined by `|`."""
    return "|".join(sorted(i.name for i in Issue if i in issues and i.name))


class ConformanceError(ValueError):
    """The message cannot be read at all (KumoMTA returns such text too)."""


# The scan ----------------------------------------------------------------------

MAX_DEPTH = 50
LINE_LIMIT = 78  # counted as KumoMTA does: the bytes between two LFs, the LF included
CTE_NAMES = frozenset({"7bit", "8bit", "binary", "quoted-printable", "base64"})
_MSG_ID = re.compile(r"\s*<[^<>@\s]+@[^<>@\s]+>\s*")
_LONE = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_NAME = re.compile(rb"[!-9;-~]*")


@dataclass
class Field:
    """One header field: where it is in the message, its name and unfolded
    value, and the canonical bytes it gets when its syntax is repaired."""

    name: str
    value: str
    start: int
    end: int
    repaired: bytes | None = None


@dataclass
class Scan:
    issues: Issue = NONE
    repairs: list[Field] = field(default_factory=list)


def _field(data: bytes, pos: int, end: int) -> tuple[Field, Issue, int]:
    """The field starting at pos (its continuation lines included)."""
    issues = NONE
    stop = pos
    while True:
        eol = data.find(b"\n", stop, end)
        stop = end if eol < 0 else eol + 1
        if stop >= end or data[stop] not in b" \t":
            break
    first = data[pos : (data.find(b"\n", pos, stop) + 1 or stop)].rstrip(b"\r\n")
    colon = first.find(b":")
    raw_name = first if colon < 0 else first[:colon]
    name = re.split(rb"[ \t]", raw_name, maxsplit=1)[0]
    if colon < 0:
        issues |= Issue.MISSING_COLON_VALUE
    if name != raw_name:
        issues |= Issue.NAME_ENDS_WITH_SPACE
    if _NAME.fullmatch(name) is None:
        raise ConformanceError(
            f"header name {name[:80]!r} is not printable US-ASCII (RFC 5322 section 2.2)"
        )
    raw_value = b"" if colon < 0 else data[pos + colon + 1 : stop]
    value = re.sub(rb"\r?\n(?=[ \t])", b"", raw_value).strip(b"\r\n").lstrip(b" ")
    text_name = name.decode("ascii")
    found = Field(text_name, value.decode("utf-8", "replace"), pos, stop)
    if issues:
        found.repaired = b"%s: %s\r\n" % (name, value)
    return found, issues, stop


def _header_section(data: bytes, pos: int, end: int) -> tuple[list[Field], Issue, int]:
    """The fields of the header section starting at pos, and where its body starts."""
    fields: list[Field] = []
    issues = NONE
    while pos < end:
        if data.startswith(b"\r\n", pos):
            return fields, issues, pos + 2
        if data[pos] == 0x0A:
            return fields, issues | Issue.NON_CANONICAL_LINE_ENDINGS, pos + 1
        if data[pos] == 0x0D:
            raise ConformanceError("lone CR in the header section")
        if data[pos] in b" \t":
            raise ConformanceError("the header section starts with white space")
        found, more, pos = _field(data, pos, end)
        fields.append(found)
        issues |= more
    return fields, issues, end


def _first(fields: Iterable[Field], name: str) -> str | None:
    return next((f.value for f in fields if f.name.lower() == name), None)


def _parses(name: str, value: str | None) -> bool:
    """Whether a MIME header's value parses (absent counts as fine)."""
    if value is None:
        return True
    if name == "content-transfer-encoding":
        return value.strip().lower() in CTE_NAMES
    if name == "content-id":
        return _MSG_ID.fullmatch(value) is not None
    header: Any = default.header_factory(name, value)
    return not header.defects


def _missing(fields: list[Field]) -> Issue:
    issues = NONE
    date = _first(fields, "date")
    try:
        parsedate_to_datetime(date or "")
    except (TypeError, ValueError, IndexError):
        issues |= Issue.MISSING_DATE_HEADER
    if not _MSG_ID.fullmatch(_first(fields, "message-id") or ""):
        issues |= Issue.MISSING_MESSAGE_ID_HEADER
    version = re.sub(r"\([^()]*\)", "", _first(fields, "mime-version") or "")
    if version.strip() != "1.0":
        issues |= Issue.MISSING_MIME_VERSION
    return issues


def _part(data: bytes, start: int, end: int, scan: Scan, depth: int) -> list[Field]:
    """Scans one MIME part (and the parts it holds) into scan."""
    if depth > MAX_DEPTH:
        raise ConformanceError(f"MIME parts are nested more than {MAX_DEPTH} deep")
    fields, issues, body = _header_section(data, start, end)
    scan.issues |= issues
    scan.repairs.extend(f for f in fields if f.repaired is not None)
    content_type: Any = default.header_factory(
        "content-type", _first(fields, "content-type") or "text/plain"
    )
    if content_type.defects or not all(_parses(n, _first(fields, n)) for n in _MIME_HEADERS):
        scan.issues |= Issue.INVALID_MIME_HEADERS
    boundary = content_type.params.get("boundary")
    if not content_type.defects and content_type.maintype == "multipart" and boundary:
        for part_start, part_end in _parts(data, body, end, boundary.encode("utf-8", "replace")):
            _part(data, part_start, part_end, scan, depth + 1)
    return fields


_MIME_HEADERS = ("content-transfer-encoding", "content-disposition", "content-id")


def _parts(data: bytes, body: int, end: int, boundary: bytes) -> Iterable[tuple[int, int]]:
    """The (start, end) of each part between the delimiters of a multipart body."""
    delimiter = b"\n--" + boundary
    at = data.find(delimiter, max(body - 1, 0), end)
    while at >= 0:
        after = at + len(delimiter)
        if data.startswith(b"--", after):
            return
        eol = data.find(b"\n", after, end)
        if eol < 0:
            return
        start = eol + 1
        at = data.find(delimiter, start - 1, end)
        stop = end if at < 0 else at
        if stop > start and data[stop - 1] == 0x0D and at >= 0:
            stop -= 1
        yield start, stop


def scan(data: bytes) -> Scan:
    """Every issue of the message; ConformanceError when it cannot be read."""
    result = Scan()
    top = _part(data, 0, len(data), result, 0)
    if not data.isascii():
        result.issues |= Issue.NEEDS_TRANSFER_ENCODING
    if any(len(line) + 1 > LINE_LIMIT for line in data.split(b"\n")[:-1]):
        result.issues |= Issue.LINE_TOO_LONG
    if _LONE.search(data):
        result.issues |= Issue.NON_CANONICAL_LINE_ENDINGS
    result.issues |= _missing(top)
    return result


# The fix ---------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """OPT_SETTINGS: a charset guess for 8-bit content (charset-normalizer,
    limited to include_encodings less exclude_encodings) and the Message-ID a
    message without one gets (`<message_id>`)."""

    message_id: str
    detect_encoding: bool = False
    include_encodings: tuple[str, ...] = ()
    exclude_encodings: tuple[str, ...] = ()


class _Refolding(EmailPolicy):
    """Refolds every header (RFC 2047 for what is not ASCII); a value the
    header registry cannot fold (its parsers fail on some broken values) is
    folded as unstructured text instead."""

    def fold(self, name: str, value: str) -> str:
        try:
            return super().fold(name, value)
        except (email_errors.HeaderParseError, IndexError, ValueError, TypeError):
            return f"{name}: {encoded(name, value)}{self.linesep}"


SETTINGS = ("detect_encoding", "include_encodings", "exclude_encodings", "message_id")


def _names(key: str, value: Any) -> tuple[str, ...]:
    if value is None or value == {}:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} must be a list of encoding names")
    return tuple(value)


def settings_from(given: dict[str, Any] | None, message_id: str) -> Settings:
    """OPT_SETTINGS as a policy gives them (ValueError for what is not one);
    message_id is the default Message-ID (without angle brackets)."""
    given = given or {}
    unknown = sorted(set(given) - set(SETTINGS), key=str)
    if unknown:
        raise ValueError(f"unknown setting {unknown[0]!r} (the settings are {', '.join(SETTINGS)})")
    detect = given.get("detect_encoding", False)
    if not isinstance(detect, bool):
        raise ValueError("detect_encoding must be a boolean")
    chosen = given.get("message_id", message_id)
    if not isinstance(chosen, str) or not chosen.isascii() or re.search(r"[\s<>]", chosen):
        raise ValueError("message_id must be ASCII without white space or angle brackets")
    return Settings(
        message_id=chosen,
        detect_encoding=detect,
        include_encodings=_names("include_encodings", given.get("include_encodings")),
        exclude_encodings=_names("exclude_encodings", given.get("exclude_encodings")),
    )


_POLICY = _Refolding(linesep="\r\n", refold_source="all")
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP
QP_LINE = 76


def _text(data: bytes, settings: Settings, detect: bool) -> str:
    """The message as text: the detected charset's decoding when asked, else
    UTF-8 with replacement characters for what is not UTF-8."""
    if detect and settings.detect_encoding:
        best = from_bytes(
            data,
            cp_isolation=list(settings.include_encodings) or None,
            cp_exclusion=list(settings.exclude_encodings) or None,
        ).best()
        if best is not None:
            return str(best)
    return data.decode("utf-8", "replace")


def _repaired(data: bytes, repairs: list[Field]) -> bytes:
    """The bytes with repaired fields in place and every line ending LF (the
    email package's own: the generator writes CRLF)."""
    out, pos = [], 0
    for f in sorted(repairs, key=lambda f: f.start):
        out += [data[pos : f.start], f.repaired or b""]
        pos = f.end
    out.append(data[pos:])
    return re.sub(rb"\r\n|\r", b"\n", b"".join(out))


def _short(text: str) -> bool:
    return text.isascii() and all(len(line) <= QP_LINE for line in text.splitlines())


def _set_encoding(part: Message, cte: str) -> None:
    if part.get("Content-Transfer-Encoding") is None:
        part["Content-Transfer-Encoding"] = cte
    else:
        part.replace_header("Content-Transfer-Encoding", cte)


def _reencode(part: Message) -> None:
    """A leaf part in 7bit when it is short-lined ASCII, else quoted-printable
    UTF-8 (text) or base64 (anything else)."""
    cte = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
    payload = part.get_payload()
    if not isinstance(payload, str):
        return
    if cte not in CTE_NAMES:  # read as 7bit, as KumoMTA does
        cte = "7bit"
        _set_encoding(part, cte)
    if _short(payload):
        return
    encoded = cte in ("quoted-printable", "base64")
    raw = part.get_payload(decode=True) if encoded else payload.encode("utf-8")
    if not isinstance(raw, bytes):
        return
    if part.get_content_maintype() == "text":
        charset = part.get_content_charset() or "utf-8"
        try:
            text = raw.decode(charset, "replace") if encoded else payload
        except LookupError:
            text = raw.decode("utf-8", "replace")
        if _short(text):
            part.set_payload(text)
            part.set_param("charset", "us-ascii")
            _set_encoding(part, "7bit")
            return
        part.set_payload(_UTF8_QP.body_encode(text))
        part.set_param("charset", "utf-8")
        _set_encoding(part, "quoted-printable")
    else:
        part.set_payload(base64.encodebytes(raw).decode("ascii"))
        _set_encoding(part, "base64")


def rebuild(data: bytes, found: Scan, settings: Settings, detect: bool) -> bytes:
    """The message rebuilt: repaired names, CRLF, re-encoded parts, headers
    refolded (RFC 2047 for what is not ASCII)."""
    text = _text(_repaired(data, found.repairs), settings, detect)
    message = Parser(policy=_POLICY).parsestr(text)
    for part in message.walk():
        if not part.is_multipart():
            _reencode(part)
    out = StringIO()
    Generator(out, policy=_POLICY, mangle_from_=False).flatten(message)
    return out.getvalue().encode("utf-8")


def _set_header(data: bytes, name: str, value: str) -> bytes:
    """Replaces the first field of that name, or adds one at the end of the
    header section."""
    fields, _, _ = _header_section(data, 0, len(data))
    line = f"{name}: {value}\r\n".encode("ascii")
    old = next((f for f in fields if f.name.lower() == name.lower()), None)
    if old is not None:
        return data[: old.start] + line + data[old.end :]
    at = fields[-1].end if fields else 0
    if at > 0 and data[at - 1] != 0x0A:  # the last field ends the message, without a newline
        line = b"\r\n" + line
    return data[:at] + line + data[at:]


def _add_missing(data: bytes, issues: Issue, settings: Settings) -> bytes:
    if Issue.MISSING_DATE_HEADER in issues:
        data = _set_header(data, "Date", format_datetime(datetime.now(UTC)))
    if Issue.MISSING_MIME_VERSION in issues:
        data = _set_header(data, "MIME-Version", "1.0")
    if Issue.MISSING_MESSAGE_ID_HEADER in issues:
        data = _set_header(data, "Message-ID", f"<{settings.message_id}>")
    return data


REBUILD_ERRORS = (email_errors.MessageError, ValueError, LookupError, TypeError, IndexError)


def check_fix(
    data: bytes, check: Issue, fix: Issue, settings: Settings
) -> tuple[bytes | None, str | None]:
    """KumoMTA's check then fix: (the fixed message or None when nothing was
    fixed, the problem text or None). Issues being fixed are not reported."""
    try:
        found = scan(data)
    except ConformanceError as e:
        return None, f"failed to parse the message: {e}"
    problems = found.issues & (check & ~fix)
    if problems:
        return None, f"Message has conformance issues: {issue_names(problems)}"
    to_fix = found.issues & fix
    if not to_fix:
        return None, None
    if to_fix & ~MISSING_HEADERS:
        detect = Issue.NEEDS_TRANSFER_ENCODING in to_fix
        try:
            data = rebuild(data, found, settings, detect)
        except REBUILD_ERRORS as e:
            return None, f"failed to rebuild the message: {e}"
    return _add_missing(data, to_fix, settings), None
