"""Answers kept for their TTL, one cache per daemon process, shared by every
evaluation; the least recently used go first when it is full."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from policyd.dns.records import MAX_TTL, Records


class DnsCache:
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
