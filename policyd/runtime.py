"""One policy revision loaded into one sandboxed Lua 5.4 state.

The Lua side (lua/sandbox.lua, lua/kumo.lua) does the work; this module makes
the state, gives it the few host functions it needs, loads the policy files
and records what they were, so the revision id covers every file loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
from importlib import resources
from typing import Any

from lupa import lua54

from policyd.source import PolicyError, PolicySource, Snapshot

log = logging.getLogger("policyd.policy")

_LUA = resources.files("policyd") / "lua"
_SANDBOX = (_LUA / "sandbox.lua").read_text()
_KUMO = (_LUA / "kumo.lua").read_text()


def _deny_attributes(obj: Any, name: str, is_setting: bool) -> str:
    raise AttributeError("Python attributes are not reachable from policies")


def revision_id(files: dict[str, bytes]) -> str:
    """A short content hash over every policy file (name and bytes)."""
    digest = hashlib.sha256()
    for name in sorted(files):
        content = files[name]
        digest.update(f"{name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()[:12]


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


class LuaPolicy:
    """A loaded, ready-to-evaluate policy revision.

    Loading runs the policy's top level (and the modules it requires) once;
    a syntax error, a runtime error at load or a second handler for an event
    raises PolicyError naming file and line. `files` records every file read,
    so Snapshot(source, policy.files) loads the very same revision again.
    """

    def __init__(self, source: PolicySource | Snapshot) -> None:
        self.source = source
        self.files: dict[str, bytes] = {}
        # Warnings raised while loading (e.g. unsupported events), for the caller to report.
        self.warnings: list[str] = []
        self.lua = lua54.LuaRuntime(
            register_eval=False,
            register_builtins=False,
            unpack_returned_tuples=True,
            attribute_filter=_deny_attributes,
        )
        host = self.lua.table_from(
            {
                "print": self._print,
                "warn": self._warn,
                "read_module": self._read_module,
                "json_decode": self._json_decode,
            }
        )
        sandbox = self.lua.execute(_SANDBOX, host)
        kumo = self.lua.execute(_KUMO, sandbox, host)
        self._load(sandbox, source.entry)
        kumo.finish_loading()
        self.revision = revision_id(self.files)
        self.handled_events: tuple[str, ...] = tuple(kumo.handled_events().values())
        self.call = kumo.evaluate
        self.table = self.lua.table_from

    def _load(self, sandbox: Any, relpath: str) -> None:
        content = self.source.read(relpath)
        self.files[relpath] = content
        chunk, error = sandbox.compile(content, relpath)
        if chunk is None:
            raise PolicyError(error)
        try:
            chunk()
        except lua54.LuaError as e:
            raise PolicyError(_first_line(e)) from None

    def _read_module(self, name: str) -> tuple[bytes | None, str]:
        try:
            relpath = self.source.module_path(name)
            content = self.source.read(relpath)
        except PolicyError as e:
            return None, str(e)
        self.files[relpath] = content
        return content, relpath

    def _json_decode(self, text: str) -> Any:
        value = json.loads(text)
        if isinstance(value, dict | list):
            return self.table(value, recursive=True)
        return value

    def _print(self, text: str) -> None:
        log.info("policy print", extra={"policy": str(self.source), "text": text})

    def _warn(self, text: str) -> None:
        self.warnings.append(text)
