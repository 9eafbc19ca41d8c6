"""The benchmark: `python -m bench` (or `make bench`); `--smoke` for a quick check.

Runs on loopback, bounded in count and time, and writes result.json, table.md
and chart.png to --out. In one run, side by side:

- SMTP throughput and transaction latency for the ceiling (a bare aiosmtpd
  server storing to a Maildir the way the edge does) and for edge + daemon with
  an all-stages policy and with a typical policy (MAIL FROM and RCPT TO), each
  as a ratio of the ceiling, with CPU seconds per 1,000 transactions for each
  process;
- the latency a policy call adds to one SMTP command on an idle system;
- the daemon alone: decisions per second at several concurrency levels, and
  the latency per decision at half the best rate;
- memory: the edge holding many idle connections, the daemon with the example
  policy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench import report
from bench.smtp_load import Probe, command_latency, hold_connections, percentile, smtp_source
from tests.procs import Proc, start_daemon, start_edge

ROOT = Path(__file__).resolve().parent.parent
# Latency per decision is measured open loop at half the 8,000/s target.
HALF_TARGET_RATE = 4000
POLICIES = Path(__file__).resolve().parent / "policies"


@dataclass(frozen=True)
class Scale:
    messages: int
    sessions: int
    rounds: int
    idle_commands: int
    daemon_seconds: float
    concurrency: tuple[int, ...]
    idle_connections: int


FULL = Scale(4000, 32, 5, 2000, 5.0, (1, 8, 32, 128, 512), 2000)
SMOKE = Scale(40, 4, 1, 50, 0.5, (1, 8), 50)


def cpu_seconds(proc: psutil.Process) -> float:
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


@dataclass(frozen=True)
class Config:
    name: str
    policy: str  # a file in bench/policies, or "bare:LOOP" for the bare server
    edge_args: tuple[str, ...] = ()
    daemon_args: tuple[str, ...] = ()


class Stack:
    """One configuration's processes: returns the SMTP port and what to measure."""

    def __init__(self, name: str, config: Config, workdir: Path):
        self.name, self.config = name, config
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True)
        self.procs: dict[str, Proc] = {}

    def __enter__(self) -> Stack:
        config = self.config
        if config.policy.startswith("bare:"):
            proc = Proc(
                [sys.executable, "-m", "bench.bare_server", "--listen", "127.0.0.1:0",
                 "--maildir", str(self.workdir / "mail"), "--loop", config.policy[5:]],
                self.workdir / "bare.log",
            )  # fmt: skip
            self.port = int(proc.wait_listening().rsplit(":", 1)[1])
            self.procs["bare"] = proc
        else:
            daemon, address = start_daemon(
                POLICIES / config.policy, self.workdir, "--watch", "off", *config.daemon_args
            )
            self.procs["policyd"] = daemon
            edge, self.port = start_edge(address, self.workdir, *config.edge_args)
            self.procs["smtpedge"] = edge
        return self

    def processes(self) -> dict[str, psutil.Process]:
        return {name: psutil.Process(p.popen.pid) for name, p in self.procs.items()}

    def stored(self) -> int:
        return len(list((self.workdir / "mail" / "new").iterdir()))

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs.values()):  # the edge first
            proc.stop()


# The first configuration is the ceiling every one is compared with: bare
# aiosmtpd on the same event loop as the edge (uvloop).
CEILING = Config("ceiling: bare aiosmtpd (uvloop)", "bare:uvloop")
CONFIGS = [
    CEILING,
    Config("bare aiosmtpd (asyncio loop)", "bare:asyncio"),
    Config("edge + daemon, all-stages policy", "all_stages.lua"),
    Config("edge + daemon, typical policy", "typical.lua"),
    Config("edge (2 workers) + daemon, typical policy", "typical.lua", ("--workers", "2")),
]
# --steps: the fast path taken apart (typical policy), each step against the ceiling.
ASYNCIO = ("--loop", "asyncio")
UNARY = ("--policy-streams", "0")
STEPS = [
    CEILING,
    Config("unary call per event, asyncio loop", "typical.lua", UNARY + ASYNCIO, ASYNCIO),
    Config("unary call per event, uvloop", "typical.lua", UNARY),
    Config("batched streams + skipping, asyncio loop", "typical.lua", ASYNCIO, ASYNCIO),
    Config("batched streams + skipping, uvloop", "typical.lua"),
]


def smtp_throughput(scale: Scale, workdir: Path, configs: list[Config]) -> dict[str, dict]:
    runs: dict[str, list[dict]] = {config.name: [] for config in configs}
    for round_ in range(scale.rounds):  # rounds interleave the configurations
        for number, config in enumerate(configs):
            name = config.name
            with Stack(f"round{round_}-config{number}", config, workdir) as stack:
                smtp_source(stack.port, min(100, scale.messages), 4)  # warm up
                procs = stack.processes()
                before = {n: cpu_seconds(p) for n, p in procs.items()}
                with Probe(stack.port) as probe:
                    seconds = smtp_source(stack.port, scale.messages, scale.sessions)
                cpu = {n: cpu_seconds(p) - before[n] for n, p in procs.items()}
                expected = scale.messages + min(100, scale.messages) + len(probe.seconds)
                assert stack.stored() >= expected - 1, (stack.stored(), expected)
                runs[name].append(
                    {
                        "transactions_per_second": scale.messages / seconds,
                        "latency_p50_ms": percentile(probe.seconds, 50) * 1000,
                        "latency_p99_ms": percentile(probe.seconds, 99) * 1000,
                        "latency_ms": [round(s * 1000, 3) for s in probe.seconds],
                        "cpu_seconds_per_1000": {
                            n: c / scale.messages * 1000 for n, c in cpu.items()
                        },
                    }
                )
    out = {}
    for name, results in runs.items():  # the median round, by throughput
        ordered = sorted(results, key=lambda r: r["transactions_per_second"])
        median = ordered[len(ordered) // 2]
        out[name] = {**median, "rounds": [r["transactions_per_second"] for r in results]}
    ceiling = out[configs[0].name]["transactions_per_second"]
    for result in out.values():
        result["ratio_of_ceiling"] = result["transactions_per_second"] / ceiling
    return out


def idle_latency(scale: Scale, workdir: Path) -> dict:
    """MAIL FROM latency with a policy call (typical) and without (no handlers), same edge."""
    out: dict[str, Any] = {}
    for name, policy in (("no policy call", "empty.lua"), ("policy call", "typical.lua")):
        with Stack(f"idle-{policy}", Config(name, policy), workdir) as stack:
            command_latency(stack.port, min(200, scale.idle_commands))  # warm up
            samples = command_latency(stack.port, scale.idle_commands)
        out[name] = {
            "p50_ms": percentile(samples, 50) * 1000,
            "p99_ms": percentile(samples, 99) * 1000,
        }
    out["added_p50_ms"] = out["policy call"]["p50_ms"] - out["no policy call"]["p50_ms"]
    return out


def daemon_load(target: str, *args: str) -> dict:
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "bench.daemon_load", "--target", target, *args],
        capture_output=True, text=True, check=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    return json.loads(result.stdout)


def daemon_only(scale: Scale, workdir: Path) -> dict:
    path = workdir / "daemon-only"
    path.mkdir()
    daemon, address = start_daemon(POLICIES / "typical.lua", path)
    try:
        proc = psutil.Process(daemon.popen.pid)
        levels = {}
        for concurrency in scale.concurrency:
            before = cpu_seconds(proc)
            result = daemon_load(
                address, "--concurrency", str(concurrency), "--seconds", str(scale.daemon_seconds)
            )
            result["daemon_cpu_seconds_per_1000"] = (
                (cpu_seconds(proc) - before) / result["decisions"] * 1000
            )
            levels[str(concurrency)] = result
        best = max(r["per_second"] for r in levels.values())
        half = daemon_load(
            address, "--rate", str(HALF_TARGET_RATE), "--seconds", str(scale.daemon_seconds)
        )
        return {"closed_loop": levels, "best_per_second": best, "at_half_rate": half}
    finally:
        daemon.stop()


def memory(scale: Scale, workdir: Path) -> dict:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, scale.idle_connections * 2 + 256), hard))
    with Stack("memory", Config("memory", "typical.lua"), workdir) as stack:
        procs = stack.processes()
        before = rss_mb(procs["smtpedge"])
        held = hold_connections(stack.port, scale.idle_connections)
        time.sleep(0.5)
        edge = rss_mb(procs["smtpedge"])
        for sock in held:
            sock.close()
    example_dir = workdir / "example"
    example_dir.mkdir()
    daemon, _ = start_daemon(ROOT / "examples" / "policy.lua", example_dir)
    try:
        daemon_rss = rss_mb(psutil.Process(daemon.popen.pid))
    finally:
        daemon.stop()
    return {
        "idle_connections": scale.idle_connections,
        "edge_rss_mb_before": before,
        "edge_rss_mb": edge,
        "daemon_rss_mb_example_policy": daemon_rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny counts: checks the harness")
    parser.add_argument(
        "--steps", action="store_true", help="only the fast path's steps, taken apart"
    )
    parser.add_argument("--out", type=Path, default=None, help="directory for the results")
    args = parser.parse_args()
    scale = SMOKE if args.smoke else FULL
    out = args.out or ROOT / "bench" / "results" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(ROOT)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        if args.steps:
            steps = smtp_throughput(scale, workdir, STEPS)
            (out / "steps.json").write_text(json.dumps(steps, indent=2))
            table = report.smtp_table(steps, "The fast path, step by step (typical policy)")
            (out / "steps.md").write_text(table)
            print(table)
            return
        result = {
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "scale": scale.__dict__,
            "smtp": smtp_throughput(scale, workdir, CONFIGS),
            "idle_command_latency": idle_latency(scale, workdir),
            "daemon_only": daemon_only(scale, workdir),
            "memory": memory(scale, workdir),
        }
    (out / "result.json").write_text(json.dumps(result, indent=2))
    table = report.table(result)
    (out / "table.md").write_text(table)
    report.chart(result, out / "chart.png")
    print(table)
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
