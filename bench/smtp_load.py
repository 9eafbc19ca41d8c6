"""SMTP load and latency measurement against a running server.

The light load comes from Postfix's `smtp-source` (C, cheap on the CPU we are
measuring): whole transactions, one connection each (banner, EHLO, MAIL, RCPT,
DATA, QUIT). Transaction latency under that load comes from a probe: one more
client running sequential transactions beside it and timing each. The
CPU-saturating load is bench/py_load.py. Idle per-command latency is timed on a
single connection with nothing else running.
"""

from __future__ import annotations

import resource
import shutil
import socket
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass

from tests.smtpclient import RawClient

MESSAGE_BYTES = 1024
# What the probe and the Python load send after DATA: 1 KiB and the final dot.
MESSAGE = b"Subject: load\r\n\r\n" + (b"x" * 62 + b"\r\n") * (MESSAGE_BYTES // 64) + b"."


@dataclass(frozen=True)
class LoadRun:
    """What one run of a load shape did, as its generator saw it."""

    transactions: int
    seconds: float
    latency_ms: list[float]  # whole transactions (the probe's, under the light load)
    load_cpu_seconds: float  # the load generator's own CPU


def children_cpu_seconds() -> float:
    """CPU of the child processes this process has waited for (the load generators)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def light_load(port: int, messages: int, sessions: int) -> LoadRun:
    """smtp-source with the probe beside it; the probe's transactions count too."""
    before = children_cpu_seconds()
    with Probe(port) as probe:
        seconds = smtp_source(port, messages, sessions)
    return LoadRun(
        messages + len(probe.seconds),
        seconds,
        [round(s * 1000, 3) for s in probe.seconds],
        children_cpu_seconds() - before,
    )


def smtp_source(port: int, messages: int, sessions: int) -> float:
    """Sends `messages` transactions over `sessions` parallel sessions; returns seconds."""
    exe = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    began = time.monotonic()
    subprocess.run(
        [exe, "-s", str(sessions), "-m", str(messages), "-l", str(MESSAGE_BYTES),
         "-f", "sender@source.example", "-t", "rcpt@example.com", "-M", "load.test",
         f"127.0.0.1:{port}"],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    return time.monotonic() - began


def transaction(port: int) -> float:
    """One whole transaction; returns its duration in seconds."""
    began = time.monotonic()
    with RawClient(port, timeout=30) as client:
        for line in (
            None,
            b"EHLO probe.test",
            b"MAIL FROM:<probe@source.example>",
            b"RCPT TO:<rcpt@example.com>",
            b"DATA",
            MESSAGE,
            b"QUIT",
        ):
            reply = client.reply() if line is None else client.command(line)
            if reply[:1] not in b"23":
                raise RuntimeError(f"probe refused: {reply!r}")
    return time.monotonic() - began


class Probe:
    """Sequential transactions in a thread while the load runs."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seconds: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seconds.append(transaction(self.port))

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def command_latency(port: int, count: int) -> list[float]:
    """MAIL FROM round trips on one idle connection (RSET between), in seconds."""
    out = []
    with RawClient(port, timeout=30) as client:
        client.reply()
        client.command(b"EHLO idle.test")
        for _ in range(count):
            began = time.perf_counter()
            reply = client.command(b"MAIL FROM:<idle@source.example>")
            out.append(time.perf_counter() - began)
            assert reply.startswith(b"250"), reply
            client.command(b"RSET")
    return out


def hold_connections(port: int, count: int) -> list[socket.socket]:
    """Opens `count` SMTP connections and reads their banners; the caller closes them."""
    held: list[socket.socket] = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        banner = sock.recv(1024)
        if not banner.startswith(b"220"):
            raise RuntimeError(f"connection {len(held)} refused: {banner!r}")
        held.append(sock)
    return held


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]
