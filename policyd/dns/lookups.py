"""What the kumo.dns functions return, and lookups shared while in flight.

A policy waiting for DNS holds up only its own evaluation. Identical lookups in
flight at the same time share one query, whose answer the cache keeps. A
lookup gives up in time for the policy to handle the failure: before the
evaluation's deadline.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from policyd import metrics
from policyd.dns.cache import DnsCache
from policyd.dns.records import DnsError, Records, Source, ptr_host, query_name, reverse_ip
from policyd.dns.sources import NetworkSource
from policyd.hostcalls import time_left


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
            query.add_done_callback(partial(self._done, key))
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
        name = query_name(name)
        v4, v6 = await asyncio.gather(self.records(name, "A"), self.records(name, "AAAA"))
        if v4.nxdomain and v6.nxdomain:
            raise DnsError("NXDOMAIN")
        return ([*v4.values, *v6.values],)

    async def lookup_mx(self, domain: str) -> tuple[dict[str, Any]]:
        name = query_name(domain)
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
        txt = await self.records(query_name(name), "TXT")
        if txt.nxdomain:
            raise DnsError("NXDOMAIN")
        return (list(txt.values),)

    async def lookup_ptr(self, ip: str) -> tuple[list[str]]:
        ptr = await self.records(ptr_host(ip), "PTR")
        return (list(ptr.values),)

    async def rbl_lookup(self, ip: str, base_domain: str) -> tuple[str | None, str | None]:
        """(the listing's address, its TXT text) or (None, None) when not listed."""
        name = query_name(f"{reverse_ip(ip)}.{query_name(base_domain)}")
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
