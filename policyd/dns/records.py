"""What DNS said about one name and type, and the names queries are made for:
pure values and functions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import dns.exception
import dns.name

from policy.addresses import parse_ip
from policyd.hostcalls import BridgeError

MAX_TTL = 86400.0
NEGATIVE_TTL = 60.0  # for a negative answer that carries no SOA to say otherwise
TYPES = ("A", "AAAA", "MX", "TXT", "PTR")


class DnsError(BridgeError):
    """A lookup that failed (the message becomes the policy's Lua error)."""


@dataclass(frozen=True)
class Records:
    """The records of one name and type (none: no data), or NXDOMAIN.

    Record values: A/AAAA an address, TXT its strings joined, MX (preference,
    exchange), PTR the name (exchange and PTR names end with a dot).
    """

    values: tuple[Any, ...] = ()
    nxdomain: bool = False
    ttl: float = NEGATIVE_TTL


class Source(Protocol):
    async def query(self, name: str, rdtype: str) -> Records: ...


def reverse_pointer(text: str) -> tuple[str, str]:
    """('1.0.0.127', 'in-addr.arpa') for 127.0.0.1 (or 127.0.0.1:port); for IPv6,
    32 reversed nibbles and 'ip6.arpa'."""
    try:
        ip = parse_ip(text)
    except ValueError as e:
        raise DnsError(str(e)) from None
    name, zone, arpa = ip.reverse_pointer.rsplit(".", 2)
    return name, f"{zone}.{arpa}"


def reverse_ip(text: str) -> str:
    return reverse_pointer(text)[0]


def ptr_host(text: str) -> str:
    """The name to look PTR records up at: 1.0.0.127.in-addr.arpa."""
    return ".".join(reverse_pointer(text))


def query_name(text: str) -> str:
    """A query name, checked and normalised (lower case, no trailing dot)."""
    if not isinstance(text, str) or not text.strip("."):
        raise DnsError(f"not a DNS name: {text!r}")
    try:
        dns.name.from_text(text)
    except (dns.exception.DNSException, ValueError) as e:
        raise DnsError(f"not a DNS name: {text!r} ({e})") from None
    return text.lower().rstrip(".")
