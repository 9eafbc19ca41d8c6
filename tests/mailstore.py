"""Reading what the edge stored: each Maildir file is the envelope lines the edge
writes first (Return-Path, one X-Envelope-To per recipient), then the message,
with the edge's Received header in its header (at the top, or under the
headers smtp_server_message_received prepended, as in KumoMTA); parse_stored
checks that shape exactly and takes the Received header out."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_STORED = re.compile(
    rb"\AReturn-Path: <(?P<sender>[^>\r\n]*)>\r\n"
    rb"(?P<recipients>(?:X-Envelope-To: <[^>\r\n]*>\r\n)+)"
    rb"(?P<message>.*)\Z",
    re.S,
)
# The edge's own Received header: "by HOST (smtpedge)" on its second line.
_RECEIVED = re.compile(rb"^Received: from [^\r\n]*\r\n\tby [^\r\n]* \(smtpedge\)[^\r\n]*\r\n"
                       rb"(?:\t[^\r\n]*\r\n)*", re.M)  # fmt: skip


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
    message = match.group("message")
    header = message.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    received = _RECEIVED.search(header)
    if received is not None:
        message = message[: received.start()] + message[received.end() :]
    return Stored(
        match.group("sender").decode(),
        [r.decode() for r in recipients],
        received.group() if received else b"",
        message,
        raw,
    )


def read_maildir(maildir: Path) -> list[Stored]:
    new = maildir / "new"
    return [parse_stored(p.read_bytes()) for p in sorted(new.iterdir())] if new.exists() else []
