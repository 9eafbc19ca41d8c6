"""The host side of the message object: header values decoded and encoded
(policyd.header_values), msg:check_fix_conformance (policyd.conformance), and
address headers for msg:from_header, msg:to_header and
msg:get_address_header: the mailboxes of a From/To/Cc-style header, groups
flattened, display names decoded, each with KumoMTA's fields (name, email,
user, domain).

All through the standard library's public email API (header registry, Header,
decode_header), lenient where mail in the wild is broken: what it cannot
decode is returned as it is.
"""

from __future__ import annotations

import json
from email.headerregistry import Address
from email.policy import default
from typing import Any

from policyd import conformance
from policyd.extensions import Context, HostFunctions, from_binary, to_python
from policyd.header_values import decoded, encoded
from policyd.mailauth.results import header_value

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

    def check_fix(
        data: str, check: str, fix: str, given: Any, message_id: str
    ) -> tuple[bytes | None, str | None, str | None]:
        """(the fixed message, the problem text, an error in the arguments)."""
        try:
            checks, fixes = conformance.parse_issues(check), conformance.parse_issues(fix)
            settings = conformance.settings_from(to_python(given), message_id)
        except ValueError as e:
            return None, None, str(e)
        fixed, problem = conformance.check_fix(from_binary(data), checks, fixes, settings)
        return fixed, problem, None

    def auth_results(serv_id: Any, results: Any) -> tuple[str | None, str | None]:
        try:
            return header_value(serv_id, to_python(results)), None
        except ValueError as e:
            return None, str(e)

    return {
        "auth_results": auth_results,
        "addresses": addresses,
        "decoded": decoded,
        "encoded": encoded,
        "check_fix": check_fix,
    }
