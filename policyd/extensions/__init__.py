"""The parts of the `kumo` module beyond kumo.lua, one extension each.

An extension is a Lua file, `policyd/lua/ext/NAME.lua`, run once in every Lua
state after kumo.lua with three arguments: the `kumo` table to add to, the
host functions of its Python module `policyd.extensions.NAME` (`functions(
context)`, if it has one) and the `support` table kumo.lua shares with its
extensions (see there). The Lua file wraps every host function in a Lua function,
so policies never hold a Python object, and raises the errors: host functions
return `value, nil` or `nil, message` instead of raising.

Extensions are found by listing the directory, so each is one Lua file and at
most one Python module, and adding one touches nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module, resources
from importlib.util import find_spec
from typing import Any

from lupa import lua54

_DIR = resources.files("policyd") / "lua" / "ext"
NAMES: tuple[str, ...] = tuple(
    sorted(p.name.removesuffix(".lua") for p in _DIR.iterdir() if p.name.endswith(".lua"))
)
_CODE = {name: (_DIR / f"{name}.lua").read_text() for name in NAMES}

HostFunctions = Mapping[str, Callable[..., Any]]


@dataclass(frozen=True)
class Context:
    """What an extension's host functions may reach.

    `read_data(relpath)` reads a file of the policy's own directory (PolicyError
    for anything else) and records it in the revision, so a changed data file
    is a new revision. `warn(text)` reports once at load, as unsupported events
    are; `policy` names the policy in log lines; `revision()` is the revision's
    id once the policy has loaded ("" while it loads). `listeners` collects
    the policy's kumo.start_esmtp_listener parameters, for the edges.
    `read_key(path)` reads a key file: from the daemon's --secrets-dir when the
    path is inside it (never part of a revision), else as read_data does.
    """

    lua: Any  # the LuaRuntime
    read_data: Callable[[str], bytes]
    warn: Callable[[str], None]
    policy: str
    revision: Callable[[], str] = lambda: ""
    listeners: list[dict[str, Any]] = field(default_factory=list)
    read_key: Callable[[str], bytes] | None = None

    def key_file(self, path: str) -> bytes:
        return (self.read_key or self.read_data)(path)

    def to_lua(self, value: Any) -> Any:
        """A Python value as Lua sees it: dicts and lists (nested) become tables."""
        if isinstance(value, dict | list | tuple):
            return self.lua.table_from(_plain(value), recursive=True)
        return value


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def from_binary(text: str) -> bytes:
    """The bytes a Lua string held, as `support.binary(s)` sent them (kumo.lua)."""
    return text.encode("latin-1")


def to_python(value: Any, depth: int = 0) -> Any:
    """A Lua value as plain Python: a table whose keys are exactly 1..n becomes a
    list (an empty table an empty dict), any other table a dict; ValueError for
    functions, cycles and other values with no plain equivalent."""
    if lua54.lua_type(value) != "table":
        if lua54.lua_type(value) is not None:
            raise ValueError(f"a {lua54.lua_type(value)} value has no plain equivalent")
        return value
    if depth > 64:
        raise ValueError("the table is nested too deeply (or cyclic)")
    items = [(k, to_python(v, depth + 1)) for k, v in value.items()]
    keys = [k for k, _ in items]
    if (
        items
        and all(isinstance(k, int) for k in keys)
        and sorted(keys) == list(range(1, len(keys) + 1))
    ):
        return [v for _, v in sorted(items)]
    return {k: v for k, v in items}


def install(context: Context, kumo: Any, support: Any) -> None:
    """Runs every extension in `context.lua`, adding to `kumo`."""
    for name in NAMES:
        functions: HostFunctions = {}
        if find_spec(f"{__name__}.{name}") is not None:
            functions = import_module(f"{__name__}.{name}").functions(context)
        host = context.lua.table_from(dict(functions))
        context.lua.execute(_CODE[name], kumo, host, support, name=f"=ext/{name}.lua")
