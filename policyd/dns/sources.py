"""Where answers come from: name servers (dnspython's asyncio resolver, on the
daemon's event loop), or, for policy test cases, a table given up front."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.message
import dns.nameserver
import dns.rcode
import dns.rdatatype
import dns.resolver

from policyd.dns.records import NEGATIVE_TTL, TYPES, DnsError, Records, ptr_host, query_name


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
    """Queries name servers: those given as (IP, port), else the system's."""

    def __init__(
        self,
        servers: list[tuple[str, int]] | None = None,
        timeout: float = 2.0,
        attempts: int = 2,
    ) -> None:
        try:
            self.resolver = dns.asyncresolver.Resolver(configure=not servers)
        except dns.resolver.NoResolverConfiguration:  # no /etc/resolv.conf: lookups fail
            self.resolver = dns.asyncresolver.Resolver(configure=False)
        if servers:
            self.resolver.nameservers = [dns.nameserver.Do53Nameserver(*s) for s in servers]
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
        return query_name(name)


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
