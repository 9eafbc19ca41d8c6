"""Start the real daemon and edge as processes, each on a free port of its own.

Both are started with port 0 and report the port they bound in their
"listening" log line, so tests never race for ports.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HOSTNAME = "mx.test"


def free_port() -> int:
    """A port free now (for servers that cannot report the one they bound)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_line(
    lines: Callable[[], list[dict[str, Any]]],
    match: Callable[[dict[str, Any]], bool],
    timeout: float,
    check: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """The first log line that matches, waiting up to `timeout` for it; `check`
    raises when waiting is pointless (the program has exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in lines():
            if match(entry):
                return entry
        check()
        time.sleep(0.02)
    raise TimeoutError(f"no matching log line in: {lines()}")


Env = dict[str, str | None]  # changes to this process's environment; None removes a variable


def environment(changes: Env | None) -> dict[str, str]:
    merged = {**os.environ, **(changes or {})}
    return {key: value for key, value in merged.items() if value is not None}


class Proc:
    """A child process whose JSON log lines (stderr) go to a file."""

    def __init__(self, args: list[str], log_path: Path, env: Env | None = None) -> None:
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.popen = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=environment(env),
        )

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"msg": line, "raw": True})
        return out

    def wait_for_log(self, match: Callable[[dict[str, Any]], bool], timeout: float = 15) -> dict:
        def alive() -> None:
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.args[2]} exited with {self.popen.returncode}:\n"
                    + self.log_path.read_text(errors="replace")
                )

        return wait_for_line(self.log_lines, match, timeout, alive)

    def wait_listening(self) -> str:
        return self.wait_for_log(lambda e: e.get("msg") == "listening")["address"]

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 10) -> int:
        self.signal(signal.SIGTERM)
        try:
            rc = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            rc = self.popen.wait()
        self._log.close()
        return rc


def refused_start(program: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m PROGRAM serve ARGS` for a start that must fail (bad policy or flags)."""
    return subprocess.run(
        [sys.executable, "-m", program, "serve", *args], capture_output=True, text=True, timeout=30
    )


def start_daemon(
    policy: Path,
    workdir: Path,
    *extra: str,
    listen: str = "127.0.0.1:0",
    log: str = "policyd.log",
    env: Env | None = None,
) -> tuple[Proc, str]:
    args = ["--policy", str(policy), "--listen", listen, *extra]
    proc = Proc([sys.executable, "-m", "policyd", "serve", *args], workdir / log, env)
    return proc, proc.wait_listening()


def start_edge(
    policy_server: str, workdir: Path, *extra: str, env: Env | None = None
) -> tuple[Proc, int]:
    proc = Proc(
        [
            sys.executable,
            "-m",
            "smtpedge",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--policy-server",
            policy_server,
            "--hostname",
            HOSTNAME,
            "--maildir",
            str(workdir / "mail"),
            *extra,
        ],
        workdir / "smtpedge.log",
        env,
    )
    address = proc.wait_listening()
    return proc, int(address.rsplit(":", 1)[1])
