"""The benchmark: `python -m bench` (or `make bench`); `--smoke` for a quick check.

What is measured is production defaults, where the disk does not hide the CPU
(issue 15): every process as a user starts it (the daemon's decision log to a
file, INFO logs, `--metrics` on daemon and edge, uvloop), Maildirs on tmpfs
unless `--dir` says otherwise. Runs on loopback, bounded in count and time, and
writes result.json, table.md and chart.png to --out. In one run:

- SMTP throughput and CPU per transaction under two load shapes, the light one
  (smtp-source, C) and a CPU-saturating one (Python clients competing with the
  servers for the cores), for the ceiling (bare aiosmtpd on uvloop), bare
  aiosmtpd on asyncio, edge + daemon with a typical and an all-stages policy,
  the edge with two workers, and relay mode (the edge relaying to a sink, beside
  a bare aiosmtpd relaying the same way): tx/s, CPU seconds per 1,000
  transactions per process and in total, and both as ratios of the baseline;
- the latency a policy call adds to one SMTP command on an idle system, beside
  the floor: a bare grpc.aio stream round trip;
- the daemon alone: decisions per second at several concurrency levels with the
  daemon's CPU per decision, and the latency per decision at a fixed rate; and,
  in process, what the decision log costs per decision;
- memory: the edge holding many idle connections, the daemon with the example
  policy.

`--steps` takes the fast path apart; `--against TREE` runs edge + daemon from
another checkout (`git worktree add`) interleaved with this one's, for a before
and after in one run; `--profile` samples edge and daemon with
py-spy under the saturating load and writes profile.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import psutil

from bench import grpc_floor, machine, report
from bench.chart import chart
from bench.decision_cost import decision_cost
from bench.profile import profile
from bench.smtp_load import command_latency, hold_connections, percentile
from bench.stacks import POLICIES, Config, Stack, production_daemon, rss_mb
from bench.throughput import Shape, shapes, smtp_throughput

ROOT = Path(__file__).resolve().parent.parent
# Latency per decision is measured open loop at half the first target, 8,000/s.
HALF_TARGET_RATE = 4000


@dataclass(frozen=True)
class Scale:
    rounds: int
    warm_up: int  # transactions before the measured loads, on each configuration
    light_messages: int
    saturating_messages: int
    saturating_seconds: float  # the saturating load stops at its count or this
    idle_commands: int
    floor_round_trips: int
    daemon_seconds: float
    concurrency: tuple[int, ...]
    idle_connections: int
    profile_seconds: float
    in_process_decisions: int  # per repeat, for the decision log's own cost

    def shapes(self) -> list[Shape]:
        return shapes(self.light_messages, self.saturating_messages, self.saturating_seconds)


# FULL takes about six minutes on the reference machine (2 cores).
FULL = Scale(
    rounds=5,
    warm_up=100,
    light_messages=1200,
    saturating_messages=2000,
    saturating_seconds=5.0,
    idle_commands=2000,
    floor_round_trips=2000,
    daemon_seconds=3.0,
    concurrency=(1, 8, 32, 128, 512),
    idle_connections=2000,
    profile_seconds=20.0,
    in_process_decisions=20000,
)
SMOKE = Scale(
    rounds=1,
    warm_up=20,
    light_messages=40,
    saturating_messages=80,
    saturating_seconds=5.0,
    idle_commands=50,
    floor_round_trips=100,
    daemon_seconds=0.5,
    concurrency=(1, 8),
    idle_connections=50,
    profile_seconds=3.0,
    in_process_decisions=500,
)

# The first configuration is the ceiling every one is compared with: bare
# aiosmtpd on the same event loop as the edge (uvloop). Relay mode is compared
# with the bare server relaying through the edge's own upstream client.
UVLOOP = ("--loop", "uvloop")
CEILING = Config("ceiling: bare aiosmtpd (uvloop)", None, UVLOOP)
TYPICAL = Config("edge + daemon, typical policy", "typical.lua")
ALL_STAGES = Config("edge + daemon, all-stages policy", "all_stages.lua")
BARE_RELAY = Config("bare aiosmtpd relaying (uvloop)", None, UVLOOP, relay=True)
CONFIGS = [
    CEILING,
    Config("bare aiosmtpd (asyncio loop)", None, ("--loop", "asyncio")),
    TYPICAL,
    ALL_STAGES,
    Config("edge (2 workers) + daemon, typical policy", "typical.lua", ("--workers", "2")),
    BARE_RELAY,
    Config(
        "edge + daemon relaying, typical policy",
        "typical.lua",
        relay=True,
        baseline=BARE_RELAY.name,
    ),
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


def against(tree: Path) -> list[Config]:
    """--against: edge + daemon from another checkout beside this one's, interleaved."""
    pairs = [TYPICAL, ALL_STAGES]
    before = [replace(c, name=f"before: {c.name}", tree=tree.resolve()) for c in pairs]
    after = [replace(c, name=f"after: {c.name}") for c in pairs]
    return [CEILING, *(c for pair in zip(before, after, strict=True) for c in pair)]


def idle_latency(scale: Scale, workdir: Path) -> dict:
    """MAIL FROM latency with a policy call (typical) and without (no handlers), same
    edge, and the floor a gRPC round trip sets."""
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
    out["grpc_floor"] = grpc_floor.measure(workdir, scale.floor_round_trips)
    return out


def daemon_load(target: str, *args: str) -> dict:
    """One bench.daemon_load run, with the daemon's CPU per decision added."""
    run = subprocess.run(
        [sys.executable, "-m", "bench.daemon_load", "--target", target, *args],
        capture_output=True, text=True, check=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    result = json.loads(run.stdout)
    result["daemon_cpu_us_per_decision"] = result["daemon_cpu_seconds"] / result["decisions"] * 1e6
    return result


def daemon_only(scale: Scale, workdir: Path) -> dict:
    path = workdir / "daemon-only"
    path.mkdir()
    daemon, address = production_daemon(POLICIES / "typical.lua", path)
    try:
        load = (address, "--pid", str(daemon.popen.pid), "--seconds", str(scale.daemon_seconds))
        levels = {str(c): daemon_load(*load, "--concurrency", str(c)) for c in scale.concurrency}
        best = max(r["per_second"] for r in levels.values())
        half = daemon_load(*load, "--rate", str(HALF_TARGET_RATE))
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
    daemon, _ = production_daemon(ROOT / "examples" / "policy.lua", example_dir)
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


def smtp_result(scale: Scale, workdir: Path, configs: list[Config]) -> dict:
    """The SMTP measurements with what they ran on: the part --steps also writes."""
    load = scale.shapes()
    return {
        "machine": machine.facts(workdir),
        "scale": asdict(scale),
        "load_shapes": {shape.key: shape.description for shape in load},
        "smtp": smtp_throughput(scale.rounds, workdir, configs, load, scale.warm_up),
    }


def write(out: Path, name: str, text: str) -> None:
    (out / name).write_text(text)
    print(text)


def run(args: argparse.Namespace, scale: Scale, workdir: Path, out: Path) -> None:
    if args.profile:
        setting = report.setting({"machine": machine.facts(workdir)})
        write(out, "profile.md", profile(TYPICAL, scale.profile_seconds, workdir, out, setting))
        return
    if args.steps or args.against:
        name = "steps" if args.steps else "against"
        smtp = smtp_result(scale, workdir, STEPS if args.steps else against(args.against))
        (out / f"{name}.json").write_text(json.dumps(smtp, indent=2))
        write(out, f"{name}.md", report.smtp_report(smtp))
        return
    result = {
        **smtp_result(scale, workdir, CONFIGS),
        "idle_command_latency": idle_latency(scale, workdir),
        "daemon_only": daemon_only(scale, workdir),
        "decision_cost": decision_cost(workdir, scale.in_process_decisions, scale.rounds),
        "memory": memory(scale, workdir),
    }
    (out / "result.json").write_text(json.dumps(result, indent=2))
    chart(result, out / "chart.png")
    write(out, "table.md", report.table(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny counts: checks the harness")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--steps", action="store_true", help="only the fast path's steps")
    mode.add_argument("--profile", action="store_true", help="py-spy on edge and daemon")
    mode.add_argument(
        "--against",
        type=Path,
        metavar="TREE",
        help="only edge + daemon, before (TREE, another checkout) and after (this one)",
    )
    parser.add_argument("--out", type=Path, default=None, help="directory for the results")
    parser.add_argument(
        "--dir", type=Path, default=None, help="where the Maildirs go [default: /dev/shm]"
    )
    args = parser.parse_args()
    scale = SMOKE if args.smoke else FULL
    out = args.out or ROOT / "bench" / "results" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(ROOT)  # the processes run modules of bench/ and tests/
    with machine.work_directory(args.dir) as workdir:
        run(args, scale, workdir, out)
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
