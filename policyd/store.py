"""Policy revisions: load, validate, activate atomically, report.

Every way a policy changes (startup, a change on disk, SIGHUP, the Reload RPC)
goes through RevisionStore.reload: the files are loaded into a fresh Lua
runtime off to the side, must compile, register their handlers and pass the
policy's own test cases; then the very same bytes are loaded into a fresh
serving runtime and swapped in with one assignment. An evaluation holds the
Revision it started on, so it finishes on it; the next one sees the new one.
A revision that fails validation never serves: the last good one goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from urllib.parse import urlsplit

from policy.v1 import policy_pb2 as pb
from policyd import metrics
from policyd.bridge import Bridge
from policyd.cases import load_cases, run_cases
from policyd.config import Limits
from policyd.decisions import DecisionLog
from policyd.evaluate import Evaluator
from policyd.extensions.listener import as_contract
from policyd.overflow import Overflow
from policyd.runtime import LuaPolicy
from policyd.source import PolicyError, PolicySource, Snapshot

log = logging.getLogger("policyd.store")


@dataclass(frozen=True)
class Revision:
    id: str
    evaluator: Evaluator
    files: tuple[str, ...]
    handlers: tuple[str, ...]
    listeners: tuple[pb.Listener, ...]
    test_files: tuple[str, ...]
    test_cases: int
    activated_at: float
    trigger: str


@dataclass(frozen=True)
class ReloadFailure:
    at: float
    trigger: str
    error: str


class Outcome(Enum):
    ACTIVATED = "activated"
    UNCHANGED = "unchanged"
    FAILED = "failed"


@dataclass(frozen=True)
class Engine:
    """What every revision is served with."""

    limits: Limits = field(default_factory=Limits)
    bridge: Bridge = field(default_factory=Bridge)
    overflow: Overflow | None = None
    max_message_size: int = 32 * 1024 * 1024
    decisions: DecisionLog | None = None
    dry_run: bool = False


def prepare(source: PolicySource, trigger: str, engine: Engine) -> tuple[Revision, list[str]]:
    """Loads and validates the policy on disk (blocking). PolicyError if it is not fit to serve."""
    checking = LuaPolicy(source, engine.limits)
    test_files = source.test_files()
    cases = load_cases(source)
    failures = asyncio.run(run_cases(checking, cases))
    if failures:
        more = f" (and {len(failures) - 1} more failing cases)" if len(failures) > 1 else ""
        raise PolicyError(f"policy test failed: {failures[0]}{more}")
    snapshot = Snapshot(source, checking.files)
    serving = LuaPolicy(snapshot, engine.limits)
    warnings = list(checking.warnings)
    configured = engine.bridge.throttles.configured_url
    if serving.redis_node and configured not in (None, serving.redis_node):
        warnings.append(
            f"kumo.configure_redis_throttles names {redacted(serving.redis_node)}; "
            f"--redis {redacted(configured)} wins"
        )
    evaluator = Evaluator(
        serving,
        engine.bridge.for_policy(serving.redis_node),
        engine.overflow,
        max_message_size=engine.max_message_size,
        decisions=engine.decisions,
        dry_run=engine.dry_run,
    )
    revision = Revision(
        id=serving.revision,
        evaluator=evaluator,
        files=tuple(sorted(serving.files)),
        handlers=serving.handled_events,
        listeners=tuple(as_contract(params) for params in serving.listeners),
        test_files=tuple(test_files),
        test_cases=len(cases),
        activated_at=time.time(),
        trigger=trigger,
    )
    return revision, warnings


def redacted(url: str | None) -> str:
    """A Redis URL fit for logs: any password replaced by ***."""
    parts = urlsplit(url or "")
    if parts.password is None:
        return url or ""
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return parts._replace(netloc=f"{user}:***@{host}{port}").geturl()


class RevisionStore:
    def __init__(self, source: PolicySource, engine: Engine | None = None) -> None:
        self.source = source
        self.engine = engine or Engine()
        self.active: Revision | None = None
        self.last_failure: ReloadFailure | None = None
        self.activations = 0
        self.failures = 0
        # Called with each newly active revision (e.g. streams telling edges).
        self.listeners: set[Callable[[Revision], None]] = set()
        self._lock = asyncio.Lock()

    async def load_initial(self) -> Revision:
        """The first revision, at startup: PolicyError means the daemon must not start."""
        revision, warnings = await asyncio.to_thread(prepare, self.source, "startup", self.engine)
        self._activate(revision, warnings)
        return revision

    async def reload(self, trigger: str) -> tuple[Outcome, str]:
        """Runs load-validate-activate; returns the outcome and the revision id or error."""
        async with self._lock:
            try:
                revision, warnings = await asyncio.to_thread(
                    prepare, self.source, trigger, self.engine
                )
            except PolicyError as e:
                self.record_failure(trigger, str(e))
                return Outcome.FAILED, str(e)
            except Exception as e:  # a bug in validation must not stop reloads for good
                log.exception("policy validation crashed", extra={"trigger": trigger})
                error = f"validation failed unexpectedly: {type(e).__name__}: {e}"
                self.record_failure(trigger, error)
                return Outcome.FAILED, error
            if self.active is not None and revision.id == self.active.id:
                metrics.RELOADS.labels("unchanged").inc()
                log.info("policy unchanged", extra={"trigger": trigger, "revision": revision.id})
                return Outcome.UNCHANGED, revision.id
            self._activate(revision, warnings)
            return Outcome.ACTIVATED, revision.id

    def record_failure(self, trigger: str, error: str) -> None:
        metrics.RELOADS.labels("failed").inc()
        self.failures += 1
        self.last_failure = ReloadFailure(time.time(), trigger, error)
        log.error(
            "policy reload failed",
            extra={
                "trigger": trigger,
                "error": error,
                "serving": self.active.id if self.active else None,
            },
        )

    def _activate(self, revision: Revision, warnings: list[str]) -> None:
        previous = self.active
        self.active = revision
        self.activations += 1
        metrics.RELOADS.labels("activated").inc()
        metrics.revision_active(
            revision.id,
            revision.trigger,
            (previous.id, previous.trigger) if previous is not None else None,
        )
        for listener in list(self.listeners):
            listener(revision)
        for warning in warnings:
            log.warning(warning, extra={"revision": revision.id})
        if not revision.handlers:
            log.warning("policy registers no handlers: every command is accepted")
        log.info(
            "policy activated",
            extra={
                "revision": revision.id,
                "previous": previous.id if previous else None,
                "trigger": revision.trigger,
                "files": list(revision.files),
                "handlers": list(revision.handlers),
                "test_cases": revision.test_cases,
            },
        )
