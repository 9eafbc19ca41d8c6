"""The processes one benchmark configuration runs, each started as a user runs it.

What is measured is production defaults: the daemon writes its decision log to
a file (its default is standard output; a file is where production sends it),
both programs log at INFO and serve `--metrics`, the edge runs on its default
event loop (uvloop) and every other option keeps its default. Only the listen
addresses, the policy and where mail goes are set. The bare servers are
aiosmtpd with no policy path at all: the ceiling everything is compared with.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

import bench
from policy import io_engine
from tests.procs import Env, Proc, free_port, start_daemon, start_edge

POLICIES = Path(__file__).resolve().parent / "policies"
# Processes whose CPU is reported but not counted in a configuration's total:
# the relay's upstream stands for the next MTA, not part of what is measured.
OUTSIDE = ("sink",)


@dataclass(frozen=True)
class Config:
    name: str
    policy: str | None  # a file in bench/policies; None: the bare aiosmtpd server
    args: tuple[str, ...] = ()  # options of the edge, or of the bare server
    daemon_args: tuple[str, ...] = ()
    relay: bool = False  # relay to a sink process instead of storing in a Maildir
    baseline: str | None = None  # compared with this configuration; None: the first
    tree: Path | None = None  # run edge and daemon from this checkout (`--against`)

    def env(self) -> Env | None:
        """What makes `python -m policyd` import another checkout's code, which
        chooses gRPC's I/O engine for itself as the operator left it."""
        if self.tree is None:
            return None
        engine = {io_engine.ENVIRONMENT: bench.OPERATOR_ENGINE}
        return {"PYTHONSAFEPATH": "1", "PYTHONPATH": str(self.tree), **engine}


def cpu_seconds(proc: psutil.Process) -> float:
    """User + system CPU of a process and its children (the --workers supervisor's)."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            times = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def rss_mb(proc: psutil.Process) -> float:
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


def production_daemon(
    policy: Path, workdir: Path, *extra: str, env: Env | None = None
) -> tuple[Proc, str]:
    """policyd with its defaults, the decision log to a file and metrics on a free port."""
    return start_daemon(
        policy,
        workdir,
        "--decision-log",
        str(workdir / "decisions.jsonl"),
        "--metrics",
        f"127.0.0.1:{free_port()}",
        *extra,
        env=env,
    )


class Stack:
    """One configuration's processes, started on entry and stopped on exit."""

    def __init__(self, name: str, config: Config, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True)
        self.procs: dict[str, Proc] = {}
        self.port = 0

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        delivery = ("--maildir", str(self.workdir / "mail"))
        if self.config.relay:
            sink = Proc(
                [sys.executable, "-m", "tests.upstream_sink", "--listen", "127.0.0.1:0",
                 "--dir", str(self.workdir / "sink")],
                self.workdir / "sink.log",
            )  # fmt: skip
            self.procs["sink"] = sink
            delivery = ("--relay", f"smtp://{sink.wait_listening()}")
        if self.config.policy is None:
            self._start_bare(delivery)
        else:
            self._start_edge(self.config.policy, delivery)

    def _start_bare(self, delivery: tuple[str, ...]) -> None:
        proc = Proc(
            [sys.executable, "-m", "bench.bare_server", "--listen", "127.0.0.1:0",
             *delivery, *self.config.args],
            self.workdir / "bare.log",
        )  # fmt: skip
        self.procs["bare"] = proc
        self.port = int(proc.wait_listening().rsplit(":", 1)[1])

    def _start_edge(self, policy: str, delivery: tuple[str, ...]) -> None:
        env = self.config.env()
        daemon, address = production_daemon(
            POLICIES / policy, self.workdir, *self.config.daemon_args, env=env
        )
        self.procs["policyd"] = daemon
        metrics = ("--metrics", f"127.0.0.1:{free_port()}")
        relay = delivery if self.config.relay else ()  # the Maildir is start_edge's own
        edge, self.port = start_edge(
            address, self.workdir, *metrics, *relay, *self.config.args, env=env
        )
        self.procs["smtpedge"] = edge

    def processes(self) -> dict[str, psutil.Process]:
        return {name: psutil.Process(p.popen.pid) for name, p in self.procs.items()}

    def stored(self) -> int:
        """Messages that reached their destination: the Maildir, or the sink."""
        if self.config.relay:
            return len(list((self.workdir / "sink").glob("*.eml")))
        return len(list((self.workdir / "mail" / "new").iterdir()))

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs.values()):  # the edge first, the sink last
            proc.stop()
