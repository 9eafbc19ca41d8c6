"""One policy revision loaded into one sandboxed Lua 5.4 state.

The Lua side (lua/limits.lua, lua/sandbox.lua, lua/kumo.lua) does the work;
this module makes the state, gives it the few host functions it needs, loads
the policy files and records what they were, so the revision id covers every
file loaded. An evaluation is a Lua coroutine: `start` runs it until it ends or
waits for a host call (kumo.sleep, ...), `resume` continues it. Both return
plain Python values, so callers never touch Lua objects outside the thread
that owns the state.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from lupa import lua54

from policy.events import EVENTS
from policyd import extensions
from policyd.config import Limits
from policyd.dns.records import DnsError, reverse_pointer
from policyd.source import PACKAGE_PATH, PolicyError, PolicySource, Snapshot, policy_relpath

log = logging.getLogger("policyd.policy")

_LUA = resources.files("policyd") / "lua"
_LIMITS, _SANDBOX, _KUMO = (
    (_LUA / f).read_text() for f in ("limits.lua", "sandbox.lua", "kumo.lua")
)


@dataclass(frozen=True)
class HandlerCoverage:
    event: str
    source: str
    first: int
    last: int
    lines: list[int]  # lines with code
    run: list[int]  # those that ran

    @property
    def missed(self) -> list[int]:
        ran = set(self.run)
        return [line for line in self.lines if line not in ran]


@dataclass(slots=True)
class AuthInfo:
    """What an AuthInfo table returned by smtp_server_auth_plain grants."""

    authn: str
    authz: str
    identities: list[tuple[str, str]]  # (identity, context)
    groups: list[str]


@dataclass(slots=True)
class Outcome:
    """A finished evaluation."""

    action: str  # continue, reject, disconnect, error
    code: int = 0
    text: str = ""
    mode: str = ""
    error: str = ""
    meta: dict[str, str] | None = None
    headers: list[tuple[str, str, str]] | None = None
    extensions: list[str] | None = None
    auth: bool = False
    msg_meta: dict[str, str] | None = None
    data: bytes | None = None  # the whole message, when a handler replaced it
    batches: list[list[str]] | None = None  # smtp_server_split_transaction's answer
    auth_info: AuthInfo | None = None  # a returned AuthInfo, as KumoMTA reconciles it
    envelope: tuple[str | None, list[str] | None] | None = None  # (sender, recipients) set
    response: tuple[int | None, str | None] | None = None  # a rewritten (status, text)
    listener: dict[str, Any] | None = None  # a connection's dynamic listener parameters
    exceeded: str | None = None  # the limit it hit, if any


@dataclass(slots=True)
class Pending:
    """An evaluation waiting for a host call."""

    co: Any
    ctx: Any
    event: str
    name: str
    where: str
    args: tuple[Any, ...]


# redis.open's parameters; only `node` means something for one node here.
_REDIS_PARAMS = frozenset(
    ("node", "cluster", "username", "password", "pool_size", "read_from_replicas",
     "connect_timeout", "wait_timeout", "response_timeout", "recycle_timeout")
)  # fmt: skip


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


def _reverse_ip(text: str) -> tuple[str | None, str]:
    """(reversed address, in-addr.arpa or ip6.arpa), or (None, the error)."""
    try:
        return reverse_pointer(text)
    except DnsError as e:
        return None, str(e)


class LuaPolicy:
    """A loaded, ready-to-evaluate policy revision.

    Loading runs the policy's top level (and the modules it requires) once,
    under the load limits; a syntax error, a runtime error at load or a second
    handler for an event raises PolicyError naming file and line. `files`
    records every file read, so Snapshot(source, policy.files) loads the very
    same revision again.
    """

    def __init__(
        self, source: PolicySource | Snapshot, limits: Limits | None = None, coverage: bool = False
    ) -> None:
        self.source = source
        self.limits = limits = limits or Limits()
        self.files: dict[str, bytes] = {}
        # Warnings raised while loading (e.g. unsupported events), for the caller to report.
        self.warnings: list[str] = []
        self.lua = lua54.LuaRuntime(
            register_eval=False,
            register_builtins=False,
            unpack_returned_tuples=True,
            attribute_filter=_deny_attributes,
            max_memory=limits.memory,
        )
        host = self.lua.table_from(
            {
                "now": time.monotonic,
                "print": self._print,
                "warn": self.warnings.append,
                "read_module": self._read_module,
                "package_path": PACKAGE_PATH,
                "json_decode": self._json_decode,
                "configure_redis": self._configure_redis,
                "reverse_ip": _reverse_ip,
                "events": self.lua.table_from([event.name for event in EVENTS]),
            }
        )
        # Set by kumo.configure_redis_throttles{node=...} while the policy loads.
        self.redis_node: str | None = None
        lua_limits = self.lua.execute(_LIMITS, host)
        if coverage:
            lua_limits.enable_coverage()
        self.slice_marker: str = lua_limits.SLICE
        sandbox = self.lua.execute(_SANDBOX, host, lua_limits)
        evaluation = self.lua.execute(_KUMO, sandbox, lua_limits, host)
        self.revision = ""
        context = extensions.Context(
            self.lua,
            self._read_data,
            self.warnings.append,
            str(source),
            lambda: self.revision,
            read_key=self._read_key,
        )
        extensions.install(context, evaluation.kumo, evaluation.support)
        self._load(sandbox, source.entry)
        error = evaluation.run_init(self.limits.load_seconds, self.limits.instructions)
        if error is not None:
            raise PolicyError(error)
        evaluation.finish_loading()
        for relpath in source.data_files():
            self.files.setdefault(relpath, source.read(relpath))
        self.listeners = context.listeners
        self.revision = revision_id(self.files)
        self.handled_events: tuple[str, ...] = tuple(evaluation.handled_events().values())
        self._start = evaluation.start
        self._resume = evaluation.resume
        self._coverage = evaluation.coverage
        self.provides: Any = evaluation.provides
        self._table = self.lua.table_from

    def _load(self, sandbox: Any, relpath: str) -> None:
        content = self.source.read(relpath)
        self.files[relpath] = content
        chunk, error = sandbox.compile(content, relpath)
        if chunk is None:
            raise PolicyError(error)
        error = sandbox.run_loading(chunk, self.limits.load_seconds, self.limits.instructions)
        if error is not None:
            raise PolicyError(error)

    def _read_data(self, path: str) -> bytes:
        relpath = policy_relpath(path)
        content = self.source.read(relpath)
        self.files[relpath] = content
        return content

    def _read_key(self, path: str) -> bytes:
        """A key file: inside --secrets-dir (kept out of the revision and its
        file list), else a file of the policy."""
        root = self.limits.secrets_dir
        if root is None or not Path(path).is_absolute():
            return self._read_data(path)
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(root.resolve()):
            return self._read_data(path)
        try:
            return resolved.read_bytes()
        except OSError as e:
            raise PolicyError(f"{path}: cannot be read from --secrets-dir ({e.strerror})") from None

    def _read_module(self, name: str, package_path: str) -> tuple[bytes | None, str]:
        try:
            relpath = self.source.module_path(name, package_path)
            content = self.source.read(relpath)
        except PolicyError as e:
            return None, str(e)
        self.files[relpath] = content
        return content, relpath

    def _json_decode(self, text: str) -> Any:
        value = json.loads(text)
        if isinstance(value, dict | list):
            return self._table(value, recursive=True)
        return value

    def coverage(self) -> list[HandlerCoverage]:
        """Which lines of each handler ran (when loaded with coverage=True)."""
        return sorted(
            (
                HandlerCoverage(
                    h.event, h.source, h.first, h.last, list(h.lines.values()), list(h.run.values())
                )
                for h in self._coverage().values()
            ),
            key=lambda h: (h.source, h.first),
        )

    def _configure_redis(self, params: Any) -> str | None:
        """redis.open's parameters as KumoMTA documents them; one node only."""
        given = extensions.to_python(params) if lua54.lua_type(params) == "table" else params
        if not isinstance(given, dict):
            return "expected a table {node = 'redis://host:port/', ...}"
        unknown = sorted(str(k) for k in given if k not in _REDIS_PARAMS)
        if unknown:
            return f"unknown parameter {', '.join(unknown)}"
        node = given.get("node")
        if isinstance(node, list) and len(node) == 1:
            node = node[0]
        if given.get("cluster") or isinstance(node, list):
            return "Redis Cluster (cluster = true, or several nodes) is not supported here yet"
        if not isinstance(node, str) or not node:
            return "node must be a redis:// URL"
        self.redis_node = node
        return None

    def _print(self, text: str) -> None:
        log.info("policy print", extra={"policy": str(self.source), "text": text})

    # Evaluation -----------------------------------------------------------

    def start(
        self,
        event: str,
        fixed: dict[str, Any],
        raw: dict[str, str] | None,
        args: dict[str, Any],
        auth: str | None,
        seconds: float,
        slice: int | None,
    ) -> Outcome | Pending:
        """Runs the handler for `event` until it ends or waits for a host call.

        `seconds` is what is left of the evaluation's time (all of it unless it
        is being run again after outgrowing its inline slice).
        """
        table = self._table
        try:
            co, ctx, *step = self._start(
                event,
                table(fixed),
                table(raw) if raw else None,
                table(args, recursive=True),
                auth,
                seconds,
                self.limits.seconds,
                self.limits.instructions,
                slice,
            )
        except lua54.LuaError as e:  # raised outside the coroutine, e.g. out of memory
            return Outcome("error", error=f"{event}: {e}")
        return self._report(co, ctx, event, step)

    def resume(self, pending: Pending, ok: bool, values: tuple[Any, ...]) -> Outcome | Pending:
        """Continues an evaluation with the outcome of its host call."""
        table = self._table
        values = tuple(
            table(v, recursive=True) if isinstance(v, dict | list) else v for v in values
        )
        try:
            step = self._resume(pending.co, pending.ctx, pending.event, ok, *values)
        except lua54.LuaError as e:
            return Outcome("error", error=f"{pending.event}: {e}")
        return self._report(pending.co, pending.ctx, pending.event, step)

    def _report(self, co: Any, ctx: Any, event: str, step: Any) -> Outcome | Pending:
        if step[0] == "call":
            name, where, *args = step[1:]
            return Pending(co, ctx, event, name, where, tuple(args))  # strings, numbers, nil
        return _outcome(step[1])


def _outcome(result: Any) -> Outcome:
    """A finished evaluation's Lua table (named fields, only those that apply), or
    just 'continue', as an Outcome."""
    if result == "continue":
        return Outcome("continue")
    fields = dict(result.items())
    for name in ("meta", "msg_meta"):
        if name in fields:
            fields[name] = dict(fields[name].items())
    if "headers" in fields:
        fields["headers"] = [tuple(change.values()) for change in fields["headers"].values()]
    if "extensions" in fields:
        fields["extensions"] = list(fields["extensions"].values())
    if "data" in fields:
        fields["data"] = extensions.from_binary(fields["data"])
    if "auth_info" in fields:
        info = fields["auth_info"]
        fields["auth_info"] = AuthInfo(
            info["authn"],
            info["authz"],
            [(i["identity"], i["context"]) for i in info["identities"].values()],
            list(info["groups"].values()),
        )
    if "batches" in fields:
        fields["batches"] = [list(batch.values()) for batch in fields["batches"].values()]
    if "listener" in fields:
        fields["listener"] = dict(fields["listener"].items())
    if "response" in fields:
        fields["response"] = (fields["response"]["status"], fields["response"]["text"])
    if "envelope" in fields:
        recipients = fields["envelope"]["recipients"]
        fields["envelope"] = (
            fields["envelope"]["sender"],
            None if recipients is None else list(recipients.values()),
        )
    return Outcome(**fields)
