from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.harness import Captured, Servers
from tests.mailstore import Stored, read_maildir
from tests.procs import Proc, start_daemon, start_edge
from tests.smtpclient import RawClient


@dataclass
class Stack:
    """A daemon and an edge, started for one test: in the test's process
    (tests/harness.py; `daemon` and `edge` are their captured logs) or as
    processes (`process_stack_factory`; then they are the processes)."""

    workdir: Path
    daemon: Proc | Captured
    daemon_address: str
    edge: Proc | Captured
    port: int
    procs: list[Proc] = field(default_factory=list)

    @property
    def maildir(self) -> Path:
        return self.workdir / "mail"

    def stored(self) -> list[bytes]:
        """The stored messages, after the edge's envelope and Received lines."""
        return [entry.message for entry in read_maildir(self.maildir)]

    def stored_entries(self) -> list[Stored]:
        return read_maildir(self.maildir)

    def client(self) -> RawClient:
        return RawClient(self.port)

    def greeted(self) -> RawClient:
        client = self.client()
        assert client.reply().startswith(b"220 ")
        assert client.command(b"EHLO client.test").startswith(b"250-")
        return client


@dataclass
class ProcessStack(Stack):
    daemon: Proc
    edge: Proc


@pytest.fixture
def write_policy(tmp_path: Path):
    def write(text: str, name: str = "policy.lua") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return write


@pytest.fixture
def servers() -> Iterator[Servers]:
    """Daemons and edges in this process, stopped after the test:
    `servers.daemon(policy, workdir, *flags)` and `servers.edge(address, workdir, *flags)`
    take and return what tests/procs.py's start_daemon and start_edge do."""
    servers = Servers()
    yield servers
    servers.stop()


@pytest.fixture
def stack_factory(tmp_path: Path, write_policy) -> Iterator:
    """make(POLICY, *EDGE_FLAGS, daemon_args=DAEMON_FLAGS): the daemon and an edge in
    this process, with the flags `policyd serve` and `smtpedge serve` take."""
    servers = Servers()

    def make(policy: str, *edge_args: str, daemon_args: tuple[str, ...] = ()) -> Stack:
        path = write_policy(policy)
        daemon, address = servers.daemon(path, tmp_path, *daemon_args)
        edge, port = servers.edge(address, tmp_path, *edge_args)
        return Stack(tmp_path, daemon, address, edge, port)

    yield make
    servers.stop()


@pytest.fixture
def process_stack_factory(tmp_path: Path, write_policy) -> Iterator:
    """Like stack_factory, with the daemon and the edge as processes: for tests that
    signal or kill them, or read what only a process has (its exit status, --metrics)."""
    procs: list[Proc] = []

    def make(policy: str, *edge_args: str, daemon_args: tuple[str, ...] = ()) -> ProcessStack:
        path = write_policy(policy)
        daemon, address = start_daemon(path, tmp_path, *daemon_args)
        procs.append(daemon)
        edge, port = start_edge(address, tmp_path, *edge_args)
        procs.append(edge)
        return ProcessStack(tmp_path, daemon, address, edge, port, procs)

    yield make
    for proc in reversed(procs):
        proc.stop()


@pytest.fixture
def stack(stack_factory, request) -> Stack:
    """A stack running the policy given by @pytest.mark.policy(TEXT)."""
    marker = request.node.get_closest_marker("policy")
    assert marker is not None, "use @pytest.mark.policy(...) with the stack fixture"
    return stack_factory(marker.args[0])


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Path:
    """Two unrelated development CAs made by `policyctl certs`, in dev/ and other/:
    server.crt (localhost, 127.0.0.1), edge-{edge-a,edge-b,client-1}.crt, admin-ops.crt."""
    directory = tmp_path_factory.mktemp("certs")
    for name in ("dev", "other"):
        subprocess.run(
            [sys.executable, "-m", "policyd.ctl", "certs", str(directory / name),
             "--edge", "edge-a", "--edge", "edge-b", "--edge", "client-1", "--admin", "ops"],
            check=True, capture_output=True,
        )  # fmt: skip
    return directory
