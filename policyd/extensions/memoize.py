"""kumo.memoize: results kept per daemon process, by cache name.

Caches live in this module, so every Lua state of the process (every worker
thread, every revision) shares them, as KumoMTA's do within one kumod; a
replica has its own. Redefining a name with other parameters replaces that
cache. Values are trees of plain data (ext/memoize.lua), stored as nested
lists; a failure of the function is kept for 60 s, as KumoMTA keeps it.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lupa import lua54

from policyd import metrics
from policyd.durations import parse_duration
from policyd.extensions import Context, HostFunctions, from_binary, to_python

FAILURE_TTL = 60.0
MAX_CAPACITY = 10_000_000
_REQUIRED = ("name", "ttl", "capacity")
_OPTIONAL = {
    "invalidate_with_epoch": bool,
    "retry_on_populate_timeout": bool,
    "allow_stale_reads": bool,
    "populate_timeout": object,
}


@dataclass(frozen=True)
class Params:
    name: str
    ttl: float
    capacity: int
    invalidate_with_epoch: bool = False

    @classmethod
    def parse(cls, given: Any) -> Params:
        if not isinstance(given, dict):
            raise ValueError(
                "the parameters must be a table {name = ..., ttl = ..., capacity = ...}"
            )
        unknown = sorted(str(k) for k in given if k not in _REQUIRED and k not in _OPTIONAL)
        if unknown:
            raise ValueError(f"unknown parameter {', '.join(unknown)}")
        missing = [k for k in _REQUIRED if k not in given]
        if missing:
            raise ValueError(f"missing required parameter {', '.join(missing)}")
        name, capacity = given["name"], given["capacity"]
        if not isinstance(name, str) or not name:
            raise ValueError("name must be a non-empty string")
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError("capacity must be a positive integer")
        for key, kind in _OPTIONAL.items():
            if kind is bool and key in given and not isinstance(given[key], bool):
                raise ValueError(f"{key} must be a boolean")
        if "populate_timeout" in given:
            parse_duration(given["populate_timeout"], "populate_timeout")
        return cls(
            name,
            parse_duration(given["ttl"], "ttl"),
            min(capacity, MAX_CAPACITY),
            bool(given.get("invalidate_with_epoch", False))
            and not given.get("allow_stale_reads", False),
        )


@dataclass
class Cache:
    params: Params
    clock: Callable[[], float] = time.monotonic
    entries: OrderedDict[str, tuple[float, Any, str | None]] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: str) -> tuple[bool, Any, str | None]:
        with self.lock:
            entry = self.entries.get(key)
            if entry is None or entry[0] <= self.clock():
                return False, None, None
            self.entries.move_to_end(key)
            return True, entry[1], entry[2]

    def put(self, key: str, value: Any, failure: str | None) -> None:
        ttl = FAILURE_TTL if failure is not None else self.params.ttl
        with self.lock:
            self.entries[key] = (self.clock() + ttl, value, failure)
            self.entries.move_to_end(key)
            while len(self.entries) > self.params.capacity:
                self.entries.popitem(last=False)


_caches: dict[str, Cache] = {}
_caches_lock = threading.Lock()


def define(params: Params) -> Cache:
    """The process's cache of that name, new if it had other parameters."""
    with _caches_lock:
        cache = _caches.get(params.name)
        if cache is None or cache.params != params:
            cache = _caches[params.name] = Cache(params)
        return cache


def _tree(value: Any) -> Any:
    """A tree from ext/memoize.lua (Lua arrays, nested) as Python lists."""
    if lua54.lua_type(value) == "table":
        return [_tree(v) for v in value.values()]
    return value


def _canonical(node: Any) -> Any:
    """The tree with each table's entries in one order, so equal tables key alike."""
    if not isinstance(node, list):
        return node
    tag = node[0]
    if tag == "t":
        entries = [[_canonical(k), _canonical(v)] for k, v in node[1]]
        return ["t", sorted(entries, key=lambda e: json.dumps(e[0]))]
    if tag == "o":
        return ["o", node[1], _canonical(node[2])]
    if tag == "a":
        return ["a", [_canonical(v) for v in node[1]]]
    return node


def _revive(tree: Any) -> Any:
    if isinstance(tree, str):
        return from_binary(tree)
    if isinstance(tree, list):
        return [_revive(v) for v in tree]
    return tree


def functions(context: Context) -> HostFunctions:
    caches: list[Cache] = []  # this state's caches, by handle

    def define_cache(given: Any) -> tuple[int | None, str | None]:
        try:
            params = Params.parse(to_python(given))
        except ValueError as e:
            return None, str(e)
        caches.append(define(params))
        return len(caches) - 1, None

    def key_text(cache: Cache, key: Any) -> str | None:
        epoch = ""
        if cache.params.invalidate_with_epoch:
            epoch = context.revision()
            if not epoch:
                return None  # called while loading: no revision to key by yet
        return epoch + "\0" + json.dumps(_canonical(_tree(key)), separators=(",", ":"))

    def get(handle: int, key: Any) -> tuple[bool, Any, str | None]:
        cache = caches[handle]
        text = key_text(cache, key)
        found, value, failure = cache.get(text) if text is not None else (False, None, None)
        outcome = "miss" if not found else "error" if failure is not None else "hit"
        metrics.MEMOIZE_LOOKUPS.labels(cache.params.name, outcome).inc()
        if not found or failure is not None:
            return found, None, failure
        return True, context.to_lua(_revive(value)), None

    def put(handle: int, key: Any, value: Any) -> None:
        cache = caches[handle]
        text = key_text(cache, key)
        if text is not None:
            cache.put(text, _tree(value), None)

    def fail(handle: int, key: Any, failure: str) -> None:
        cache = caches[handle]
        text = key_text(cache, key)
        if text is not None:
            cache.put(text, None, failure)

    return {"define": define_cache, "get": get, "put": put, "fail": fail}
