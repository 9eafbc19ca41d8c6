"""`python -m bench --profile`: where the CPU goes in the edge and the daemon.

The saturating load runs against edge + daemon (typical policy, production
defaults) twice on the same processes: first unprofiled, for each process's CPU
per transaction (psutil), then with `py-spy record` sampling both processes
from outside, so neither runs other code than in the benchmark. py-spy runs
non-blocking (pausing the processes for each sample cut throughput to a third
here) and samples only the thread holding the GIL (`--gil`), so threads that
wait (the executor's, the metrics server's) are not counted as busy, as they
are without it. A function's share of a process's samples times that
process's CPU per transaction gives the microseconds per transaction it costs.
CPU spent without the GIL (system calls, gRPC's C core threads) is not
sampled and so is spread over the functions in proportion; and on two busy
cores a thread may hold the GIL while it waits for a core, so the shares are
of time holding the GIL, close to but not exactly CPU time. The self time of
`Runner.run` is code with no Python frame below the event loop: uvloop itself,
grpc.aio's Cython layer, protobuf's C parser and serialiser.
Writes profile.md, and py-spy's raw (collapsed stack) files for flame graphs.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.py_load import saturating_load
from bench.smtp_load import LoadRun, smtp_source
from bench.stacks import Config, Stack, cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
RATE = 200  # samples per second per process
TOP = 20
SPY = Path(sys.executable).parent / "py-spy"
# The frames that start a program and its event loop are on every sample of the
# main thread: the inclusive ranking starts at the loop.
EVENT_LOOP = "Runner.run (asyncio/runners.py"


@dataclass(frozen=True)
class Samples:
    total: int
    self: Counter[str]
    inclusive: Counter[str]


def short(frame: str) -> str:
    """`handle (/work/main/smtpedge/smtp.py:12)` → `handle (smtpedge/smtp.py:12)`."""
    name, _, where = frame.partition(" (")
    for prefix in (f"{ROOT}/", "site-packages/", "lib/python3.11/"):
        if prefix in where:
            where = where.split(prefix, 1)[1]
    return f"{name} ({where}" if where else name


def parse(raw: str) -> Samples:
    """py-spy's raw format: one line per distinct stack, `root;...;leaf COUNT`."""
    self: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [short(f) for f in stack.split(";") if f] or ["(no Python frame)"]
        self[frames[-1]] += int(count)
        loop = next((i for i, f in enumerate(frames) if f.startswith(EVENT_LOOP)), 0)
        for frame in set(frames[loop:]):  # recursion counts once
            inclusive[frame] += int(count)
    return Samples(sum(self.values()), self, inclusive)


def record(pid: int, path: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(SPY), "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw",
             "--function", "--nonblocking", "--gil", "--output", str(path)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def stop(sampler: subprocess.Popen[bytes], path: Path, log: Path) -> str:
    """Ctrl-C makes py-spy write what it sampled; its log says why when it could not."""
    sampler.send_signal(signal.SIGINT)
    sampler.wait(60)
    if not path.exists() or not path.read_text().strip():
        raise RuntimeError(f"py-spy wrote no samples: {log.read_text(errors='replace')}")
    return path.read_text()


def ranking(counts: Counter[str], samples: Samples, us_per_tx: float, what: str) -> list[str]:
    lines = [f"| function | {what} | µs / tx |", "|---|---:|---:|"]
    for frame, count in counts.most_common(TOP):
        share = count / samples.total
        lines.append(f"| `{frame}` | {share:.1%} | {share * us_per_tx:.1f} |")
    return lines


@dataclass(frozen=True)
class Measured:
    """A process under the load: CPU per transaction unprofiled, and its CPU use
    while profiled (to set beside the time its samples held the GIL)."""

    us_per_tx: float
    cores: float  # CPU seconds per second while profiled
    sampled_seconds: float  # the profiled run's length


def breakdown(name: str, samples: Samples, measured: Measured) -> list[str]:
    held = samples.total / RATE / measured.sampled_seconds  # of wall time, GIL held
    us_per_tx = measured.us_per_tx
    return [
        f"## {name}: {us_per_tx:.0f} µs of CPU per transaction",
        "",
        f"{samples.total} samples with the GIL held ({held:.2f} of the wall time; the process "
        f"used {measured.cores:.2f} cores meanwhile).",
        "",
        "### By self time (the function's own code)",
        "",
        *ranking(samples.self, samples, us_per_tx, "self"),
        "",
        "### By inclusive time (with what it calls)",
        "",
        *ranking(samples.inclusive, samples, us_per_tx, "inclusive"),
        "",
    ]


def loaded(stack: Stack, seconds: float) -> tuple[LoadRun, dict[str, float]]:
    """The saturating load for `seconds`, and each process's CPU seconds meanwhile."""
    procs = stack.processes()
    before = {n: cpu_seconds(p) for n, p in procs.items()}
    run = saturating_load(stack.port, 10**9, seconds)
    return run, {n: cpu_seconds(p) - before[n] for n, p in procs.items()}


def profile(config: Config, seconds: float, workdir: Path, out: Path, setting: str) -> str:
    """Profiles `config` under the saturating load for `seconds`; returns profile.md."""
    with Stack("profile", config, workdir) as stack:
        smtp_source(stack.port, 100, 4)  # warm up
        plain, plain_cpu = loaded(stack, seconds)
        files = {
            n: (out / f"profile-{n}.raw.txt", workdir / f"py-spy-{n}.log") for n in stack.procs
        }
        samplers = {n: record(p.pid, *files[n]) for n, p in stack.processes().items()}
        sampled, sampled_cpu = loaded(stack, seconds)
        raws = {n: stop(sampler, *files[n]) for n, sampler in samplers.items()}
    lines = [
        f"# Where the CPU goes: {config.name}, saturating load",
        "",
        setting,
        "",
        f"Load: 16 Python sessions in 2 processes, {seconds:.0f} s unprofiled "
        f"({plain.transactions / plain.seconds:.0f} tx/s), then {seconds:.0f} s with py-spy "
        f"at {RATE} Hz on each process, non-blocking, GIL holder only "
        f"({sampled.transactions / sampled.seconds:.0f} tx/s). µs / tx: the process's CPU per "
        "transaction in the unprofiled run (psutil) times the share of its samples.",
        "",
    ]
    for name, raw in raws.items():
        measured = Measured(
            plain_cpu[name] / plain.transactions * 1e6,
            sampled_cpu[name] / sampled.seconds,
            sampled.seconds,
        )
        lines += breakdown(name, parse(raw), measured)
    return "\n".join(lines)
