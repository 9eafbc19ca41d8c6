"""The header lines the edge adds to a message it accepts: pure functions.

- `Received:` (RFC 5321 section 4.4): who handed the message to whom, how
  (RFC 3848 protocol names: ESMTP, ESMTPS, ESMTPA, ESMTPSA, or SMTP after HELO),
  under which id, for which recipient (when there is exactly one), and when.
- For Maildir: `Return-Path: <sender>` and one `X-Envelope-To: <recipient>` per
  recipient, before everything else, so a stored file carries its envelope.
"""

from __future__ import annotations

import re
from datetime import datetime
from email.utils import format_datetime
from functools import lru_cache

_UNSAFE = re.compile(r"[^!-~]")  # anything but printable ASCII, no spaces


def _token(text: str) -> str:
    return _UNSAFE.sub("_", text) or "unknown"


@lru_cache(maxsize=2)
def _date(when: datetime) -> str:
    """RFC 5322's date, to the second: formatted once per second, not per message."""
    return format_datetime(when)


def protocol(esmtp: bool, tls: bool, authenticated: bool) -> str:
    if not esmtp:
        return "SMTP"
    return "ESMTP" + ("S" if tls else "") + ("A" if authenticated else "")


def received_header(
    *,
    ehlo: str | None,
    peer_ip: str,
    hostname: str,
    protocol: str,
    message_id: str,
    recipients: list[str],
    when: datetime,
) -> bytes:
    literal = f"IPv6:{peer_ip}" if ":" in peer_ip else peer_ip
    lines = [
        f"Received: from {_token(ehlo or '')} ([{literal}])",
        f"\tby {_token(hostname)} (smtpedge) with {protocol} id {message_id}",
    ]
    date = _date(when.replace(microsecond=0))
    if len(recipients) == 1:
        lines.append(f"\tfor <{recipients[0]}>; {date}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{date}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def envelope_headers(sender: str, recipients: list[str]) -> bytes:
    lines = [f"Return-Path: <{sender}>", *(f"X-Envelope-To: <{r}>" for r in recipients)]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")
