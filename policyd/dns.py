"""kumo.dns: DNS lookups for policies, asynchronous and cached for their TTL.

Lookups run on the daemon's event loop (dnspython's asyncio resolver), so a
policy waiting for DNS holds up only its own evaluation. Answers and negative
answers (NXDOMAIN, or no records of the type) are kept for their TTL in one
bounded cache per daemon process, shared by every evaluation; identical
lookups in flight at the same time share one query. A lookup gives up in time
for the policy to handle the failure: before the resolver's own lifetime and
before the evaluation's deadline, whichever comes first.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdatatype
import dns.resolver

from policyd import metrics
from policyd.hostcalls import BridgeError, time_left

MAX_TTL = 86400.0
NEGATIVE_TTL = 60.0  # for a negative answer that carries no SOA to say otherwise
TYPES = ("A", "AAAA", "MX", "TXT", "PTR")


class DnsError(BridgeError):
    """A lookup that failed (the message becomes the policy's Lua error)."""


@dataclass(frozen=True)
class Records:
    """What DNS said about one name and type: its records (none: no data), or NXDOMAIN.

    Record values: A/AAAA an address, TXT its strings joined, MX (preference,
    exchange), PTR the name (exchange and PTR names end with a dot).
    """

    values: tuple[Any, ...] = ()
    nxdomain: bool = False
    ttl: float = NEGATIVE_TTL


class Source(Protocol):
    async def query(self, name: str, rdtype: str) -> Records: ...


# Pure helpers --------------------------------------------------------------


def split_address(text: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int | None]:
    """The IP address and port (if any) in `ip`, `ip:port` or `[ipv6]:port`."""
    host, port = text, None
    if text.startswith("[") and "]" in text:
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        ip = ipaddress.ip_address(host)
        return ip, int(port) if port is not None else None
    except ValueError:
        raise DnsError(f"not an IP address: {text!r}") from None


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The IP address in `ip`, `ip:port` or `[ipv6]:port` (as conn_meta's received_from)."""
    ip = split_address(text)[0]
    # An IPv4 client on a dual-stack listener shows as ::ffff:a.b.c.d.
    return ip.ipv4_mapped or ip if isinstance(ip, ipaddress.IPv6Address) else ip


def reverse_pointer(text: str) -> tuple[str, str]:
    """('1.0.0.127', 'in-addr.arpa') for 127.0.0.1; for IPv6, 32 reversed nibbles
    and 'ip6.arpa'."""
    name, zone, arpa = parse_ip(text).reverse_pointer.rsplit(".", 2)
    return name, f"{zone}.{arpa}"


def reverse_ip(text: str) -> str:
    return reverse_pointer(text)[0]


def ptr_host(text: str) -> str:
    """The name to look PTR records up at: 1.0.0.127.in-addr.arpa."""
    return ".".join(reverse_pointer(text))


def _name(text: str) -> str:
    """A query name, checked and normalised (lower case, no trailing dot)."""
    if not isinstance(text, str) or not text.strip("."):
        raise DnsError(f"not a DNS name: {text!r}")
    try:
        dns.name.from_text(text)
    except (dns.exception.DNSException, ValueError) as e:
        raise DnsError(f"not a DNS name: {text!r} ({e})") from None
    return text.lower().rstrip(".")


# The cache -----------------------------------------------------------------


class DnsCache:
    """Records by (name, type), each until its TTL runs out; the least recently
    used go first when full."""

    def __init__(self, size: int = 10000, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], tuple[float, Records]] = OrderedDict()

    def get(self, key: tuple[str, str]) -> Records | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, records = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return records

    def put(self, key: tuple[str, str], records: Records) -> None:
        ttl = min(records.ttl, MAX_TTL)
        if ttl <= 0 or self.size <= 0:
            return
        self._entries[key] = (self._clock() + ttl, records)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


# Where answers come from ---------------------------------------------------


def _negative_ttl(response: dns.message.Message | None) -> float:
    """RFC 2308: the SOA's TTL, capped by its MINIMUM field."""
    for rrset in response.authority if response is not None else ():
        if rrset.rdtype == dns.rdatatype.SOA:
            return float(min(rrset.ttl, rrset[0].minimum))
    return NEGATIVE_TTL


def _value(rdtype: str, rdata: Any) -> Any:
    if rdtype in ("A", "AAAA"):
        return rdata.address
    if rdtype == "TXT":
        return b"".join(rdata.strings).decode("utf-8", errors="replace")
    if rdtype == "MX":
        return (rdata.preference, rdata.exchange.to_text())
    return rdata.target.to_text()  # PTR


class NetworkSource:
    """Queries name servers: those given as IP[:PORT], else the system's."""

    def __init__(self, servers: list[str] | None = None, timeout: float = 2.0, attempts: int = 2):
        try:
            self.resolver = dns.asyncresolver.Resolver(configure=not servers)
        except dns.resolver.NoResolverConfiguration:  # no /etc/resolv.conf: lookups fail
            self.resolver = dns.asyncresolver.Resolver(configure=False)
        if servers:
            self.resolver.nameservers = [nameserver(s) for s in servers]
        self.resolver.timeout = timeout  # one try at one server
        self.lifetime = timeout * attempts
        self.resolver.cache = None  # DnsCache above is the cache

    async def query(self, name: str, rdtype: str) -> Records:
        if not self.resolver.nameservers:
            raise DnsError("no name server configured (see policyd --dns-server)")
        try:
            answer = await self.resolver.resolve(
                name,
                rdtype,
                search=False,
                raise_on_no_answer=False,
                lifetime=self.lifetime,
            )
        except dns.resolver.NXDOMAIN as e:
            responses = list(e.responses().values())
            return Records(nxdomain=True, ttl=_negative_ttl(responses[0] if responses else None))
        except dns.resolver.LifetimeTimeout:
            raise DnsError("timed out") from None
        except dns.resolver.NoNameservers as e:
            raise DnsError(_failure(e)) from None
        except dns.exception.DNSException as e:
            raise DnsError(f"{type(e).__name__}: {e}") from None
        if answer.rrset is None:
            return Records(ttl=_negative_ttl(answer.response))
        values = tuple(_value(rdtype, rdata) for rdata in answer.rrset)
        return Records(values, ttl=float(answer.rrset.ttl))


def _failure(error: dns.resolver.NoNameservers) -> str:
    """SERVFAIL, REFUSED, … as the servers answered."""
    for *_where, response in error.kwargs.get("errors", ()):
        if isinstance(response, dns.message.Message) and response.rcode() != dns.rcode.NOERROR:
            return dns.rcode.to_text(response.rcode())
    return "no name server answered"


def nameserver(server: str) -> dns.nameserver.Do53Nameserver:
    ip, port = split_address(server)
    return dns.nameserver.Do53Nameserver(str(ip), port or 53)


class StaticSource:
    """Answers given up front, for policy test cases: {name: {TYPE: [values]}}.

    A name missing from the table is NXDOMAIN; a type missing for a name is no
    data; `fail = "SERVFAIL"` (or any text) makes every lookup of the name fail.
    A name may also be an IP address, standing for its PTR name. MX values are
    "PREFERENCE EXCHANGE".
    """

    def __init__(self, zone: Mapping[str, Mapping[str, Any]]) -> None:
        """ValueError, naming the entry, for anything it cannot serve."""
        self.zone: dict[str, dict[str, Any]] = {}
        for name, types in zone.items():
            try:
                self.zone[_key(name)] = _answers(types)
            except (DnsError, ValueError, TypeError, AttributeError) as e:
                raise ValueError(f"dns {name!r}: {e}") from None

    async def query(self, name: str, rdtype: str) -> Records:
        answers = self.zone.get(name)
        if answers is None:
            return Records(nxdomain=True)
        if "fail" in answers:
            raise DnsError(answers["fail"])
        return Records(tuple(answers.get(rdtype, ())), ttl=300.0)


def _key(name: str) -> str:
    try:
        return ptr_host(name)
    except DnsError:
        return _name(name)


def _answers(types: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(types) - {*TYPES, "fail"}
    if unknown:
        raise ValueError(f"unknown record types {sorted(unknown)}")
    answers: dict[str, Any] = {}
    for rdtype, values in types.items():
        if rdtype == "fail":
            answers["fail"] = str(values)
            continue
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"{rdtype} must be a list of strings")
        if rdtype == "MX":
            parts = [v.split() for v in values]
            if not all(len(p) == 2 and p[0].isdigit() for p in parts):
                raise ValueError("MX values are 'PREFERENCE EXCHANGE'")
            answers[rdtype] = [(int(p[0]), p[1]) for p in parts]
        elif rdtype in ("A", "AAAA"):
            answers[rdtype] = [str(ipaddress.ip_address(v)) for v in values]
        else:
            answers[rdtype] = values
    return answers


# What the policy calls -----------------------------------------------------


class Dns:
    def __init__(self, source: Source | None = None, cache: DnsCache | None = None) -> None:
        self.source: Source = source or NetworkSource()
        self.cache = cache if cache is not None else DnsCache()
        self._inflight: dict[tuple[str, str], asyncio.Task[Records]] = {}

    async def records(self, name: str, rdtype: str) -> Records:
        """From the cache, or from one query shared by everyone asking meanwhile.
        Each caller waits within its own evaluation's deadline (leaving the
        policy a moment to handle a failure); the query itself runs on for the
        others, and for the cache."""
        key = (name, rdtype)
        cached = self.cache.get(key)
        if cached is not None:
            metrics.DNS_LOOKUPS.labels(rdtype, "cached").inc()
            return cached
        query = self._inflight.get(key)
        if query is None:
            query = asyncio.get_running_loop().create_task(self._query(name, rdtype))
            self._inflight[key] = query
            query.add_done_callback(lambda task, key=key: self._done(key, task))
        try:
            left = time_left()
            async with asyncio.timeout(left * 0.8 if left != math.inf else None):
                return await asyncio.shield(query)
        except TimeoutError:
            raise DnsError("timed out") from None

    def _done(self, key: tuple[str, str], query: asyncio.Task[Records]) -> None:
        del self._inflight[key]
        if not query.cancelled():
            query.exception()  # retrieved: no warning when every caller has left

    async def _query(self, name: str, rdtype: str) -> Records:
        try:
            records = await self.source.query(name, rdtype)
        except DnsError:
            metrics.DNS_LOOKUPS.labels(rdtype, "failure").inc()
            raise
        outcome = "nxdomain" if records.nxdomain else "answer" if records.values else "nodata"
        metrics.DNS_LOOKUPS.labels(rdtype, outcome).inc()
        self.cache.put((name, rdtype), records)
        return records

    async def lookup_addr(self, name: str) -> tuple[list[str]]:
        name = _name(name)
        v4, v6 = await asyncio.gather(self.records(name, "A"), self.records(name, "AAAA"))
        if v4.nxdomain and v6.nxdomain:
            raise DnsError("NXDOMAIN")
        return ([*v4.values, *v6.values],)

    async def lookup_mx(self, domain: str) -> tuple[dict[str, Any]]:
        name = _name(domain)
        mx = await self.records(name, "MX")
        if mx.nxdomain:
            raise DnsError("NXDOMAIN")
        by_pref: dict[int, list[str]] = {}
        for preference, exchange in mx.values:
            by_pref.setdefault(preference, []).append(exchange)
        if not by_pref:  # RFC 5321 5.1: the domain itself is the implicit MX
            by_pref = {0: [name]}
        hosts = [host for pref in sorted(by_pref) for host in sorted(by_pref[pref])]
        return (
            {
                "domain_name": name,
                "by_pref": {pref: sorted(hosts_) for pref, hosts_ in by_pref.items()},
                "hosts": hosts,
                "site_name": ",".join(hosts),
                "is_domain_literal": False,
                "is_secure": False,
                "is_mx": bool(mx.values),
            },
        )

    async def lookup_txt(self, name: str) -> tuple[list[str]]:
        txt = await self.records(_name(name), "TXT")
        if txt.nxdomain:
            raise DnsError("NXDOMAIN")
        return (list(txt.values),)

    async def lookup_ptr(self, ip: str) -> tuple[list[str]]:
        ptr = await self.records(ptr_host(ip), "PTR")
        return (list(ptr.values),)

    async def rbl_lookup(self, ip: str, base_domain: str) -> tuple[str | None, str | None]:
        """(the listing's address, its TXT text) or (None, None) when not listed."""
        name = _name(f"{reverse_ip(ip)}.{_name(base_domain)}")
        listed = await self.records(name, "A")
        if not listed.values:
            return None, None
        try:
            txt = await self.records(name, "TXT")
        except DnsError:
            return listed.values[0], None  # listed; the reason is a nicety
        return listed.values[0], " ".join(txt.values) if txt.values else None

    def functions(self) -> dict[str, Callable[..., Awaitable[tuple[Any, ...]]]]:
        """The bridge functions; their errors name the call, as the policy wrote it."""
        names = ("lookup_addr", "lookup_mx", "lookup_txt", "lookup_ptr", "rbl_lookup")
        return {f"dns.{name}": _named(name, getattr(self, name)) for name in names}


def _named(
    name: str, function: Callable[..., Awaitable[tuple[Any, ...]]]
) -> Callable[..., Awaitable[tuple[Any, ...]]]:
    async def call(*args: Any) -> tuple[Any, ...]:
        try:
            return await function(*args)
        except DnsError as e:
            shown = ", ".join(repr(a) for a in args)
            raise DnsError(f"kumo.dns.{name}({shown}): {e}") from None

    return call
