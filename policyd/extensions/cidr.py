"""kumo.cidr.make_map: which entry of a CIDR map answers for an IP address.

The host keeps each map's keys; ext/cidr.lua keeps the values, by slot. A
KumoMTA CIDR map is a prefix tree where inserting a block replaces whatever
the tree held for every address inside it, so an address is answered by the
last-inserted key that contains it. Here each key keeps its insertion number,
and a lookup takes, among the keys containing the address (one dictionary
probe per prefix length in use), the one inserted last: the same answers.

Keys are `any`, an address (a /32 or /128 block) or a block in CIDR notation
with its host bits zero; lookups and keys may also be written `[address]`,
`[address]:port` or `address:port`, as KumoMTA reads them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from policyd.extensions import Context, HostFunctions, to_python

Key = tuple[int, int, int]  # (IP version, or 0 for `any`; prefix length; network as an integer)
ANY: Key = (0, 0, 0)
BITS = {4: 32, 6: 128}


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if "%" in text:  # a scope, which KumoMTA's parser does not take
        raise ValueError(f"{text} is not an IP address")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{text} is not an IP address") from None


def parse_cidr(text: str) -> Key:
    """`any`, an address or a CIDR block, strictly (host bits must be zero)."""
    if text == "any":
        return ANY
    address_text, slash, length_text = text.rpartition("/")
    if not slash:
        address = _address(text)
        return address.version, BITS[address.version], int(address)
    address = _address(address_text)
    bits = BITS[address.version]
    if not (length_text.isascii() and length_text.isdecimal()) or int(length_text) > bits:
        raise ValueError(f"{text} is not a valid CIDR block: bad prefix length")
    length = int(length_text)
    network = int(address) >> (bits - length) << (bits - length)
    if network != int(address):
        hint = ipaddress.ip_network(text, strict=False)
        raise ValueError(
            f"{text} is not a valid CIDR block: host bits are set; did you mean {hint}?"
        )
    return address.version, length, network


def parse_key(text: str) -> Key:
    """A key or lookup as KumoMTA reads it: also `[ip]`, `[ip]:port`, `ip:port`."""
    try:
        return parse_cidr(text)
    except ValueError as first:
        if "/" in text and not text.startswith("["):
            raise  # a block that is wrong in itself, not an address with a port
        if text.startswith("[") and "]" in text:
            inner = text[1:].split("]", 1)[0]
            return _within(inner, text, "[]-enclosed", parse_cidr)
        if ":" in text:
            return _within(text.rsplit(":", 1)[0], text, ":-delimited", parse_cidr)
        raise first from None


def _within(part: str, text: str, how: str, parse: Any) -> Key:
    try:
        key: Key = parse(part)
        return key
    except ValueError as e:
        raise ValueError(f"{e} (the {how} part of '{text}')") from None


def key_text(key: Key) -> str:
    """A key as KumoMTA shows it: `any`, a bare address for a host, else a block."""
    version, length, network = key
    if version == 0:
        return "any"
    address = ipaddress.ip_address(network) if version == 4 else ipaddress.IPv6Address(network)
    return str(address) if length == BITS[version] else f"{address}/{length}"


@dataclass
class CidrTable:
    """A map's keys: each key's insertion number and the slot of its value."""

    entries: dict[Key, tuple[int, int]] = field(default_factory=dict)
    lengths: dict[int, set[int]] = field(default_factory=lambda: {4: set(), 6: set()})
    inserted: int = 0

    def insert(self, key: Key) -> int:
        self.inserted += 1
        old = self.entries.get(key)
        slot = old[1] if old else len(self.entries) + 1
        self.entries[key] = (self.inserted, slot)
        if key[0]:
            self.lengths[key[0]].add(key[1])
        return slot

    def lookup(self, key: Key) -> int | None:
        version, _, address = key
        if version == 0:
            return None
        bits = BITS[version]
        best = self.entries.get(ANY)
        for length in self.lengths[version]:
            found = self.entries.get(
                (version, length, address >> (bits - length) << (bits - length))
            )
            if found and (best is None or found[0] > best[0]):
                best = found
        return best[1] if best else None

    def in_order(self) -> list[tuple[str, int]]:
        """(key, slot) in insertion order: inserting them again makes the same map."""
        ordered = sorted(self.entries.items(), key=lambda item: item[1][0])
        return [(key_text(key), slot) for key, (_, slot) in ordered]


def _seed_order(parsed: list[tuple[Key, str]]) -> list[int]:
    """The order to insert a table's keys in: broader blocks first, so each
    address gets its most specific key (KumoMTA inserts them in its hash
    order, so its answer for overlapping keys varies; this is one of them)."""
    return sorted(
        range(len(parsed)),
        key=lambda i: (-1 if parsed[i][0] == ANY else parsed[i][0][1], parsed[i][1]),
    )


def functions(context: Context) -> HostFunctions:
    def make(keys: Any) -> tuple[CidrTable | None, Any]:
        """A table of `keys` and, in the order they went in, {key's index, slot}."""
        texts = to_python(keys) or []
        table = CidrTable()
        try:
            parsed = [(parse_key(text), text) for text in texts]
        except ValueError as e:
            return None, str(e)
        order = [(i + 1, table.insert(parsed[i][0])) for i in _seed_order(parsed)]
        return table, context.to_lua(order)

    def insert(table: CidrTable, text: str) -> tuple[int | None, str | None]:
        try:
            return table.insert(parse_key(text)), None
        except ValueError as e:
            return None, str(e)

    def lookup(table: CidrTable, text: str) -> int | None:
        try:
            return table.lookup(parse_key(text))
        except ValueError:
            return None

    def entries(table: CidrTable) -> Any:
        return context.to_lua(table.in_order())

    return {"make": make, "insert": insert, "lookup": lookup, "entries": entries}
