"""The CPU-saturating load: Python SMTP clients competing with the servers for the cores.

    python -m bench.py_load --port PORT --sessions 8 --messages 1000 --seconds 10

smtp-source (C) is so cheap that it leaves a core idle, which edge + daemon (two
processes) can use and a one-process bare server cannot, so the light load
flatters the edge (issue 15). Here the clients are Python on uvloop, in
processes of their own, so the load generator and the servers compete for the
same cores and throughput is what the CPU affords. Each session runs whole
transactions, one connection each: banner, EHLO, MAIL, RCPT, DATA with 1 KiB,
QUIT. A run ends after --messages transactions or --seconds, whichever comes
first. Any reply that is not 2xx or 3xx ends the process with status 1 and the
reply on stderr. It prints one JSON object: transactions, when it began and
ended (CLOCK_MONOTONIC, comparable between processes), each transaction's
latency, and its own CPU seconds while it ran.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import uvloop

from bench.smtp_load import MESSAGE, LoadRun

SESSIONS = 16  # in total, over all the generator's processes
PROCESSES = 2  # one per core of the reference machine
COMMANDS = (
    b"EHLO load.test\r\n",
    b"MAIL FROM:<sender@source.example>\r\n",
    b"RCPT TO:<rcpt@example.com>\r\n",
    b"DATA\r\n",
    MESSAGE + b"\r\n",
    b"QUIT\r\n",
)


class Refused(Exception):
    """The server answered something other than 2xx/3xx, or closed the connection."""


async def reply(reader: asyncio.StreamReader, after: bytes) -> None:
    """Reads one whole reply (every line of a multi-line one); Refused unless 2xx/3xx."""
    while True:
        line = await reader.readline()
        if len(line) < 4 or line[:1] not in b"23":
            raise Refused(f"after {after[:40]!r}: {line!r}")
        if line[3:4] != b"-":
            return


async def transaction(port: int) -> float:
    """One whole transaction on a new connection; returns its duration in seconds."""
    began = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reply(reader, b"(banner)")
        for command in COMMANDS:
            writer.write(command)
            await reply(reader, command)
    finally:
        writer.close()
    return time.perf_counter() - began


@dataclass
class Budget:
    """Transactions left to start, and the time after which none starts."""

    left: int
    deadline: float

    def take(self) -> bool:
        if self.left <= 0 or time.monotonic() >= self.deadline:
            return False
        self.left -= 1
        return True


async def session(port: int, budget: Budget, latencies: list[float]) -> None:
    while budget.take():
        latencies.append(await transaction(port))


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


async def run(port: int, sessions: int, messages: int, seconds: float) -> dict[str, object]:
    """The load; its CPU is counted from here, without the interpreter's start-up."""
    latencies: list[float] = []
    began, cpu = time.monotonic(), cpu_seconds()
    budget = Budget(messages, began + seconds)
    await asyncio.gather(*(session(port, budget, latencies) for _ in range(sessions)))
    return {
        "transactions": len(latencies),
        "began": began,
        "ended": time.monotonic(),
        "latency_ms": [round(s * 1000, 3) for s in latencies],
        "cpu_seconds": cpu_seconds() - cpu,
    }


def saturating_load(port: int, messages: int, seconds: float) -> LoadRun:
    """SESSIONS sessions over PROCESSES generator processes, started together."""
    args = [sys.executable, "-m", "bench.py_load", "--port", str(port),
            "--sessions", str(SESSIONS // PROCESSES), "--messages", str(messages // PROCESSES),
            "--seconds", str(seconds)]  # fmt: skip
    procs = [
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(PROCESSES)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=seconds + 60)
        if proc.returncode != 0:
            raise RuntimeError(f"the Python load failed ({proc.returncode}): {err.decode()}")
        results.append(json.loads(out))
    return LoadRun(
        sum(r["transactions"] for r in results),
        max(r["ended"] for r in results) - min(r["began"] for r in results),
        [ms for r in results for ms in r["latency_ms"]],
        sum(r["cpu_seconds"] for r in results),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sessions", type=int, default=SESSIONS // PROCESSES)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    try:
        result = uvloop.run(run(args.port, args.sessions, args.messages, args.seconds))
    except (Refused, OSError) as e:
        sys.exit(f"py_load: {type(e).__name__}: {e}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
