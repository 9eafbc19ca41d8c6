"""The real daemon and edge inside the test process.

The same code as `policyd serve` and `smtpedge serve`, built from the same
command-line flags, runs on an event loop of its own thread: the daemon
listens on a Unix socket, the edge on a free loopback port that tests talk
SMTP to, byte for byte, as they would to the processes. Starting a pair costs
milliseconds instead of the second two processes take, so every test that
needs neither signals nor a separate process uses this (tests/procs.py starts
the processes for the others). Log lines are captured as the JSON objects the
processes would write, so tests read them the same way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import click
import uvloop

from policy import logs
from tests.procs import HOSTNAME, wait_for_line

STARTUP_TIMEOUT = 30.0


class ServerLoop:
    """An event loop running on a thread of its own until closed."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = STARTUP_TIMEOUT) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class Captured(logging.Handler):
    """One program's log lines (its loggers start with `prefix`), as JSON objects.
    With two daemons (or edges) in one test, each sees the lines of both."""

    def __init__(self, prefix: str, level: str, extra_file: Path | None = None) -> None:
        super().__init__(level.upper())
        self.prefix = prefix
        self.extra_file = extra_file  # the decision log, for the daemon
        self.lines: list[dict[str, Any]] = []
        self.setFormatter(logs.formatter())

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(self.prefix):
            self.lines.append(json.loads(self.format(record)))

    def log_lines(self) -> list[dict[str, Any]]:
        lines = list(self.lines)
        if self.extra_file is not None and self.extra_file.exists():
            text = self.extra_file.read_text()
            complete = text[: text.rfind("\n") + 1]  # a line being written is not read yet
            lines += [json.loads(line) for line in complete.splitlines()]
        return lines

    def wait_for_log(self, match: Callable[[dict[str, Any]], bool], timeout: float = 15) -> dict:
        return wait_for_line(self.log_lines, match, timeout)


def _params(command: click.Command, args: list[str]) -> dict[str, Any]:
    """The parameters `command` would be called with for these flags."""
    with command.make_context(command.name or "serve", args) as ctx:
        return dict(ctx.params)


def _in_process(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters less those about the process, which must be at their defaults
    (a test of --workers or --metrics runs the programs as processes)."""
    workers, loop, metrics = params.pop("workers"), params.pop("loop"), params.pop("metrics")
    if (workers, metrics) != (1, None):
        raise ValueError("--workers and --metrics need the programs as processes (tests/procs.py)")
    del loop  # the harness's own loop serves
    return params


class Servers:
    """The daemon and edges of one test, in process; `stop()` ends them all."""

    def __init__(self) -> None:
        self.loop = ServerLoop()
        self._stops: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._handlers: list[Captured] = []
        self._sockets = Path(tempfile.mkdtemp(prefix="harness-", dir="/tmp"))  # short paths
        root = logging.getLogger()
        self._level = root.level
        root.setLevel(logging.INFO)  # as the programs log by default (debug is slower)

    def _capture(self, prefix: str, params: dict[str, Any], extra: Path | None = None) -> Captured:
        handler = Captured(prefix, params.pop("log_level"), extra)
        root = logging.getLogger()
        root.setLevel(min(root.level, handler.level))  # --log-level debug, for one
        root.addHandler(handler)
        self._handlers.append(handler)
        return handler

    def daemon(self, policy: Path, workdir: Path, *args: str) -> tuple[Captured, str]:
        """policyd serve --policy POLICY ARGS, on a Unix socket; its address."""
        from policyd.cli import make_config, serve
        from policyd.server import Server

        socket = self._sockets / f"policyd-{len(self._stops)}.sock"
        flags = ["--policy", str(policy), "--listen", f"unix:{socket}", *args]
        if "--decision-log" not in args:
            flags += ["--decision-log", str(workdir / "decisions.log")]
        params = _in_process(_params(serve, flags))
        target = params["decision_log"]
        decisions = Path(target) if target not in ("-", "off") else None
        log = self._capture("policyd", params, decisions)
        server = Server(make_config(**params))
        self.loop.run(server.startup())
        self._stops.append(server.shutdown)
        return log, f"unix:{socket}"

    def edge(self, policy_server: str, workdir: Path, *args: str) -> tuple[Captured, int]:
        """smtpedge serve with the flags tests/procs.py gives it, and ARGS; its SMTP port."""
        from smtpedge.cli import given, make_config, serve
        from smtpedge.server import EdgeServer

        flags = ["--listen", "127.0.0.1:0", "--policy-server", policy_server,
                 "--hostname", HOSTNAME, "--maildir", str(workdir / "mail"), *args]  # fmt: skip
        with serve.make_context("serve", flags) as ctx:
            params = _in_process(dict(ctx.params))
            explicit = given(ctx)
        log = self._capture("smtpedge", params)
        server = EdgeServer(make_config(**params, explicit=explicit))
        self.loop.run(server.startup())
        self._stops.append(server.shutdown)
        address = log.wait_for_log(lambda e: e.get("msg") == "listening")["address"]
        return log, int(address.rsplit(":", 1)[1])

    def stop(self) -> None:
        try:
            for stop in reversed(self._stops):  # edges first
                self.loop.run(stop())
        finally:
            self.loop.close()
            root = logging.getLogger()
            for handler in self._handlers:
                root.removeHandler(handler)
            root.setLevel(self._level)
            for path in self._sockets.iterdir():
                path.unlink()
            self._sockets.rmdir()
