"""The host side of the message object: header values decoded from RFC 2047
(the header getters), values encoded for prepend_header/append_header's ENCODE
flag, and address headers for msg:from_header, msg:to_header and
msg:get_address_header: the mailboxes of a From/To/Cc-style header, groups
flattened, display names decoded, each with KumoMTA's fields (name, email,
user, domain).

All through the standard library's public email API (header registry, Header,
decode_header), lenient where mail in the wild is broken: what it cannot
decode is returned as it is.
"""

from __future__ import annotations

import json
from email.charset import QP, Charset
from email.errors import HeaderParseError
from email.header import Header, decode_header, make_header
from email.headerregistry import Address
from email.policy import default
from typing import Any

from policyd.extensions import Context, HostFunctions

# A header longer than this is not parsed (a policy's instruction budget does
# not cover host time).
MAX_VALUE = 64 * 1024


def _entry(address: Address) -> dict[str, str | None]:
    email = address.addr_spec or None
    return {
        "name": address.display_name or None,
        "email": email if email != "<>" else None,
        "user": address.username or None,
        "domain": address.domain or None,
    }


def parse(value: str) -> list[dict[str, str | None]]:
    """The mailboxes of an address header's value, in order, less tokens that are
    no address at all (ValueError when it is too long, or is broken and holds no
    address with a domain). An empty group (`undisclosed-recipients:;`) is none."""
    if len(value) > MAX_VALUE:
        raise ValueError(f"the header is longer than {MAX_VALUE} characters")
    header: Any = default.header_factory("To", value)
    entries = [_entry(a) for a in header.addresses if a.addr_spec != "<>" or a.display_name]
    if header.defects and not any(e["domain"] for e in entries):
        raise ValueError(f"no address in {value[:200]!r}: {header.defects[0]}")
    return entries


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


def _json(entry: dict[str, str | None]) -> str:
    return json.dumps({"name": entry["name"], "address": entry["email"]}, ensure_ascii=False)


def functions(context: Context) -> HostFunctions:
    table = context.lua.table_from

    def addresses(value: str) -> tuple[Any, str | None]:
        try:
            entries = parse(value)
        except ValueError as e:
            return None, str(e)
        listed = [table(e | {"json": _json(e)}) for e in entries]
        whole = "[" + ",".join(_json(e) for e in entries) + "]"
        return table({"list": table(listed), "json": whole}), None

    return {"addresses": addresses, "decoded": decoded, "encoded": encoded}
