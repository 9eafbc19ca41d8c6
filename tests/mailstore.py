"""Reading what the edge stored: each Maildir file is the envelope lines the edge
writes first (Return-Path, one X-Envelope-To per recipient), its Received
header, then the message; parse_stored checks that shape exactly."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_STORED = re.compile(
    rb"\AReturn-Path: <(?P<sender>[^>\r\n]*)>\r\n"
    rb"(?P<recipients>(?:X-Envelope-To: <[^>\r\n]*>\r\n)+)"
    rb"(?P<received>Received: [^\r\n]*\r\n(?:\t[^\r\n]*\r\n)*)?"
    rb"(?P<message>.*)\Z",
    re.S,
)


@dataclass(frozen=True)
class Stored:
    sender: str
    recipients: list[str]
    received: bytes  # the Received header, or b"" when switched off
    message: bytes  # everything after it: what the client sent, with the policy's changes
    raw: bytes


def parse_stored(raw: bytes) -> Stored:
    match = _STORED.match(raw)
    assert match, f"not the edge's stored shape: {raw[:300]!r}"
    recipients = re.findall(rb"X-Envelope-To: <([^>]*)>", match.group("recipients"))
    return Stored(
        match.group("sender").decode(),
        [r.decode() for r in recipients],
        match.group("received") or b"",
        match.group("message"),
        raw,
    )


def read_maildir(maildir: Path) -> list[Stored]:
    new = maildir / "new"
    return [parse_stored(p.read_bytes()) for p in sorted(new.iterdir())] if new.exists() else []
