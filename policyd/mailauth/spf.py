"""SPF (RFC 7208): may this IP address send mail for this domain?

Our own evaluator over the daemon's asynchronous, cached resolver
(policyd.dns), so a check never blocks the event loop and gives up within the
evaluation's deadline: the maintained SPF libraries for Python resolve
synchronously. Limits as the RFC sets them: 10 terms that query DNS
(include, a, mx, ptr, exists, redirect), 2 void lookups, 10 names per mx or
ptr. A DNS failure is a temperror, a broken record a permerror.
"""

from __future__ import annotations

import ipaddress
import re
import time
import urllib.parse
from dataclasses import dataclass
from typing import Protocol

from policyd.dns.records import DnsError, Records, ptr_host, query_name

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
DNS_TERMS = 10
VOID_LOOKUPS = 2
NAMES_PER_LOOKUP = 10


class Resolver(Protocol):
    async def records(self, name: str, rdtype: str) -> Records: ...


@dataclass(frozen=True)
class SpfResult:
    """The disposition (pass, fail, softfail, neutral, none, temperror,
    permerror) and why, in words (for fail, the domain's explanation when it
    gives one)."""

    disposition: str
    context: str


class _Stop(Exception):
    """Ends the evaluation with a temperror or a permerror."""

    def __init__(self, disposition: str, context: str) -> None:
        super().__init__(context)
        self.result = SpfResult(disposition, context)


@dataclass
class _Check:
    """One check_host run: its identities and the RFC's counters."""

    dns: Resolver
    ip: IP
    sender: str
    helo: str
    receiver: str
    terms: int = 0
    voids: int = 0

    def count_term(self) -> None:
        self.terms += 1
        if self.terms > DNS_TERMS:
            raise _Stop("permerror", f"more than {DNS_TERMS} DNS-querying terms")

    async def lookup(self, name: str, rdtype: str) -> tuple[object, ...]:
        """The values (none: a void lookup, counted); temperror on failure."""
        try:
            records = await self.dns.records(query_name(name), rdtype)
        except DnsError as e:
            if str(e).startswith("not a DNS name"):
                raise _Stop("permerror", str(e)) from None
            raise _Stop("temperror", f"DNS lookup of {name} {rdtype} failed: {e}") from None
        if not records.values:
            self.voids += 1
            if self.voids > VOID_LOOKUPS:
                raise _Stop("permerror", f"more than {VOID_LOOKUPS} void DNS lookups")
        return records.values

    async def addresses(self, name: str) -> list[IP]:
        rdtype = "A" if self.ip.version == 4 else "AAAA"
        return [ipaddress.ip_address(str(v)) for v in await self.lookup(name, rdtype)]


def _client_ip(text: str) -> IP:
    ip = ipaddress.ip_address(text)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


async def check_host(
    dns: Resolver, ip: str, domain: str, sender: str, helo: str = "", receiver: str = ""
) -> SpfResult:
    """RFC 7208's check_host() for the client `ip`, the `domain` to check and
    the MAIL FROM `sender` ("" for the null sender: postmaster@helo stands)."""
    if not sender:
        sender = f"postmaster@{helo or domain}"
    elif "@" not in sender:
        sender = f"postmaster@{sender}"
    check = _Check(dns, _client_ip(ip), sender, helo, receiver)
    try:
        return await _evaluate(check, domain.rstrip(".").lower())
    except _Stop as stop:
        return stop.result


async def _record(check: _Check, domain: str) -> str | None:
    try:
        records = await check.dns.records(query_name(domain), "TXT")
    except DnsError as e:
        if str(e).startswith("not a DNS name"):
            return None
        raise _Stop("temperror", f"DNS lookup of {domain} TXT failed: {e}") from None
    spf = [str(v) for v in records.values if re.match(r"v=spf1(?: |$)", str(v), re.IGNORECASE)]
    if len(spf) > 1:
        raise _Stop("permerror", f"{domain} has more than one SPF record")
    return spf[0] if spf else None


_TERM = re.compile(
    r"(?P<q>[-+~?]?)(?P<name>[A-Za-z][A-Za-z0-9_.-]*)(?::(?P<arg>[^/]*))?"
    r"(?P<cidr4>/\d+)?(?://(?P<cidr6>\d+))?\Z"
)
_MODIFIER = re.compile(r"(?P<name>[A-Za-z][A-Za-z0-9_.-]*)=(?P<value>.*)\Z")
MECHANISMS = frozenset(("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"))


async def _evaluate(check: _Check, domain: str) -> SpfResult:
    record = await _record(check, domain)
    if record is None:
        return SpfResult("none", f"no SPF records found for {domain}")
    terms = record.split()[1:]
    modifiers: dict[str, str] = {}
    directives = []
    for term in terms:
        modifier = _MODIFIER.match(term)
        if modifier and modifier["name"].lower() not in MECHANISMS:
            name = modifier["name"].lower()
            if name in modifiers and name in ("redirect", "exp"):
                raise _Stop("permerror", f"{domain}: more than one {name}= modifier")
            modifiers[name] = modifier["value"]
            continue
        directive = _TERM.match(term)
        if directive is None or directive["name"].lower() not in MECHANISMS:
            raise _Stop("permerror", f"{domain}: invalid term {term!r}")
        directives.append((term, directive))
    for term, directive in directives:
        if await _matches(check, domain, directive):
            disposition = QUALIFIERS[directive["q"] or "+"]
            context = f"matched '{term}' directive"
            if disposition == "fail" and "exp" in modifiers:
                context = await _explanation(check, domain, modifiers["exp"]) or context
            return SpfResult(disposition, context)
    if "redirect" in modifiers:
        check.count_term()
        target = _expand(check, modifiers["redirect"], domain)
        result = await _evaluate(check, target)
        if result.disposition == "none":
            return SpfResult("permerror", f"redirect to {target}, which has no SPF record")
        return result
    return SpfResult("neutral", f"no directive of {domain} matched")


def _network(ip: IP, base: IP, cidr4: str | None, cidr6: str | None) -> bool:
    length = int((cidr4 or "/32")[1:]) if ip.version == 4 else int(cidr6 or 128)
    if length > ip.max_prefixlen:
        raise _Stop("permerror", f"invalid CIDR length /{length}")
    if base.version != ip.version:
        return False
    return ip in ipaddress.ip_network(f"{base}/{length}", strict=False)


async def _matches(check: _Check, domain: str, d: re.Match[str]) -> bool:
    name, arg = d["name"].lower(), d["arg"]
    if name == "all":
        return True
    if name in ("ip4", "ip6"):
        try:
            net = ipaddress.ip_network(f"{arg}{d['cidr4'] or ''}", strict=False)
        except ValueError:
            raise _Stop("permerror", f"invalid {name} network {arg!r}") from None
        if net.version != (4 if name == "ip4" else 6):
            raise _Stop("permerror", f"{name}:{arg} is not an IPv{name[-1]} network")
        return check.ip.version == net.version and check.ip in net
    if name in ("include", "exists") and not arg:
        raise _Stop("permerror", f"{name} needs a domain")
    check.count_term()
    target = _expand(check, arg, domain) if arg else domain
    if name == "include":
        result = await _evaluate(check, target)
        if result.disposition in ("temperror",):
            raise _Stop("temperror", result.context)
        if result.disposition in ("permerror", "none"):
            raise _Stop("permerror", f"include:{target}: {result.disposition}")
        return result.disposition == "pass"
    if name == "a":
        addresses = await check.addresses(target)
        return any(_network(check.ip, a, d["cidr4"], d["cidr6"]) for a in addresses)
    if name == "mx":
        exchanges = [str(v[1]) for v in await check.lookup(target, "MX")]  # type: ignore[index]
        if len(exchanges) > NAMES_PER_LOOKUP:
            raise _Stop("permerror", f"{target} has more than {NAMES_PER_LOOKUP} MX records")
        for exchange in exchanges:
            addresses = await check.addresses(exchange)
            if any(_network(check.ip, a, d["cidr4"], d["cidr6"]) for a in addresses):
                return True
        return False
    if name == "exists":
        return bool(await check.lookup(target, "A"))
    return await _ptr(check, target)


async def _ptr(check: _Check, target: str) -> bool:
    """ptr (RFC 7208 section 5.5): a validated name of the client at or under target."""
    try:
        names = await check.lookup(ptr_host(str(check.ip)), "PTR")
    except _Stop as stop:
        if stop.result.disposition == "temperror":
            return False  # the RFC: a failing PTR lookup is no match
        raise
    for name in [str(n).rstrip(".").lower() for n in names][:NAMES_PER_LOOKUP]:
        if name == target or name.endswith("." + target):
            try:
                if check.ip in await check.addresses(name):
                    return True
            except _Stop as stop:
                if stop.result.disposition != "temperror":
                    raise
    return False


async def _explanation(check: _Check, domain: str, spec: str) -> str | None:
    """The exp= text, expanded; None when it cannot be had (RFC 7208 6.2)."""
    try:
        target = _expand(check, spec, domain)
        records = await check.dns.records(query_name(target), "TXT")
    except (_Stop, DnsError):
        return None
    if len(records.values) != 1:
        return None
    try:
        return _expand(check, str(records.values[0]), domain, explain=True)
    except _Stop:
        return None


_MACRO = re.compile(
    r"%(?:\{(?P<letter>[A-Za-z])(?P<digits>\d*)(?P<r>[rR]?)(?P<delims>[.\-+,/_=]*)\}"
    r"|(?P<esc>[%_-]))"
)


def _expand(check: _Check, spec: str, domain: str, explain: bool = False) -> str:
    """A domain-spec (or an explanation) with its macros expanded (RFC 7208 7)."""

    def one(m: re.Match[str]) -> str:
        if m["esc"]:
            return {"%": "%", "_": " ", "-": "%20"}[m["esc"]]
        letter = m["letter"]
        value = _macro_value(check, letter.lower(), domain, explain)
        parts = re.split("[" + re.escape(m["delims"] or ".") + "]", value)
        if m["r"]:
            parts.reverse()
        if m["digits"]:
            parts = parts[-int(m["digits"]) :] if int(m["digits"]) else parts
        value = ".".join(parts)
        return urllib.parse.quote(value, safe="") if letter.isupper() else value

    expanded = _MACRO.sub(one, spec)
    if "%" in _MACRO.sub("", spec):
        raise _Stop("permerror", f"invalid macro in {spec!r}")
    if not explain:
        expanded = expanded.rstrip(".")
        while len(expanded) > 253 and "." in expanded:
            expanded = expanded.split(".", 1)[1]
    return expanded


def _macro_value(check: _Check, letter: str, domain: str, explain: bool) -> str:
    local, _, sender_domain = check.sender.rpartition("@")
    ip = check.ip
    values = {
        "s": check.sender,
        "l": local or "postmaster",
        "o": sender_domain,
        "d": domain,
        "i": str(ip) if ip.version == 4 else ".".join(ip.exploded.replace(":", "")),
        "p": "unknown",
        "v": "in-addr" if ip.version == 4 else "ip6",
        "h": check.helo or domain,
    }
    if explain:
        values |= {"c": str(ip), "r": check.receiver or "unknown", "t": str(int(time.time()))}
    if letter not in values:
        raise _Stop("permerror", f"macro %{{{letter}}} is not allowed here")
    return values[letter]
