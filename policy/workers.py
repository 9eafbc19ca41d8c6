"""`--workers N`: N processes serving one port, supervised by the first.

The workers bind the same address (SO_REUSEPORT), so the kernel spreads
connections over them. The supervisor spawns them (spawn, not fork: gRPC does
not survive a fork), waits until each reports that it serves, forwards
SIGTERM/SIGINT (stop: each worker drains as a single process does) and any
other signals it is asked to (policyd: SIGHUP, reload), restarts a worker that
dies, and serves the metrics of all of them (prometheus_client's multiprocess
mode). Each worker has a process group of its own, so signals reach workers
once, through the supervisor; under systemd use KillMode=mixed for the same
reason (SIGTERM to the supervisor only).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from multiprocessing.context import SpawnProcess
from typing import Any

from policy.addresses import Address

log = logging.getLogger("policy.workers")

READY_TIMEOUT = 120.0  # seconds a worker may take to start (a big policy loads slowly)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

# What a worker runs: it serves until stopped and calls its argument once it serves.
Worker = Callable[[Callable[[], None]], None]


def fixed_port(address: Address) -> Address:
    """Every worker must bind the same port, so port 0 ("any") is chosen here, once."""
    if address.is_unix or address.port != 0:
        return address
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((address.host, 0))
        return address.with_port(s.getsockname()[1])


def _child(worker: Worker, ready: Any) -> None:
    # A process group of its own: a terminal's Ctrl-C reaches the supervisor only,
    # which passes it on once (the same signal twice would mean "stop at once").
    os.setpgrp()
    worker(lambda: ready.put(os.getpid()))


def supervise(
    worker: Worker,
    count: int,
    *,
    address: Address,
    metrics: Address | None,
    grace: float,
    forward: tuple[signal.Signals, ...] = (),
    details: Mapping[str, object] | None = None,
) -> int:
    """Runs `count` workers until SIGTERM/SIGINT; returns the exit status.
    OSError when a worker fails to start. `details` go into the "listening" line."""
    metrics_dir = tempfile.mkdtemp(prefix="smtp-policy-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    stops = 0  # stop signals received (a second one: the workers stop at once)

    def start() -> SpawnProcess:
        process = context.Process(target=_child, args=(worker, ready))
        process.start()
        return process

    def relay(signum: int, _frame: object) -> None:
        nonlocal stops
        stops += signum in STOP_SIGNALS
        for process in processes:
            if process.pid and process.is_alive():
                os.kill(process.pid, signum)

    processes: list[SpawnProcess] = []
    for sig in (*STOP_SIGNALS, *forward):
        signal.signal(sig, relay)
    processes.extend(start() for _ in range(count))
    try:
        if not _wait_ready(processes, ready, lambda: stops > 0):
            return 0
        if metrics is not None:
            _serve_metrics(metrics)
        log.info("listening", extra={"address": str(address), "workers": count, **(details or {})})
        while not stops:
            for number, process in enumerate(processes):
                if not process.is_alive() and not stops:
                    log.error("worker died; restarting", extra={"exitcode": process.exitcode})
                    processes[number] = start()
            time.sleep(0.2)
        for process in processes:
            process.join(grace + 5)
        return 0 if stops == 1 else 1
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _wait_ready(processes: list[SpawnProcess], ready: Any, stopping: Callable[[], bool]) -> bool:
    """True once every worker serves; False if told to stop first."""
    waiting = len(processes)
    deadline = time.monotonic() + READY_TIMEOUT
    while waiting:
        try:
            ready.get(timeout=0.2)
            waiting -= 1
        except queue.Empty:
            if stopping():
                return False
            if any(not p.is_alive() for p in processes) or time.monotonic() > deadline:
                raise OSError("a worker failed to start (see its log above)") from None
    return True


def _serve_metrics(address: Address) -> None:
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    start_http_server(address.port, address.host, registry=registry)
