"""`--workers N`: N daemon processes on one port, so a big machine uses its cores.

The workers bind the same address (gRPC sets SO_REUSEPORT), so the kernel
spreads edges' connections over them. The parent only supervises: it spawns
the workers (spawn, not fork: gRPC does not survive a fork), forwards SIGHUP
(reload) and SIGTERM/SIGINT (stop) to all of them, restarts one that dies, and
serves the metrics of all of them (prometheus_client's multiprocess mode).
A worker that reloads on the Reload RPC sends its parent SIGHUP, so the others
reload too.
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
from dataclasses import replace
from multiprocessing.context import SpawnProcess

from policyd.config import ServeConfig

log = logging.getLogger("policyd.workers")


def _worker(config: ServeConfig, loop: str, log_level: str, ready: multiprocessing.Queue) -> None:
    # A SIGHUP relayed before the server handles it must not kill the worker; it
    # loads the current policy as it starts anyway.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from policyd import logs
    from policyd.server import Server, run

    logs.configure(log_level)
    run(Server(config, on_ready=lambda: ready.put(os.getpid())).serve(), loop)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def serve_workers(config: ServeConfig, workers: int, loop: str, log_level: str) -> int:
    """Runs and supervises the workers until SIGTERM/SIGINT; returns the exit status."""
    host, _, port = config.listen.rpartition(":")
    if port == "0":
        config = replace(config, listen=f"{host}:{_free_port(host.strip('[]'))}")
    metrics_dir = tempfile.mkdtemp(prefix="policyd-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    worker_config = replace(config, metrics=None, worker=True)
    context = multiprocessing.get_context("spawn")
    ready: multiprocessing.Queue = context.Queue()
    stopping = False

    def start() -> SpawnProcess:
        process = context.Process(target=_worker, args=(worker_config, loop, log_level, ready))
        process.start()
        return process

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = stopping or signum in (signal.SIGTERM, signal.SIGINT)
        for process in processes:
            if process.pid and process.is_alive():
                os.kill(process.pid, signum)

    processes = [start() for _ in range(workers)]
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        _wait_ready(processes, ready)
        if config.metrics:
            _serve_metrics(config.metrics)
        log.info("listening", extra={"address": config.listen, "workers": workers})
        while not stopping:
            for number, process in enumerate(processes):
                if not process.is_alive() and not stopping:
                    log.error("worker died; restarting", extra={"exitcode": process.exitcode})
                    processes[number] = start()
            time.sleep(0.2)
        for process in processes:
            process.join(config.shutdown_grace + 5)
        return 0
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _wait_ready(processes: list[SpawnProcess], ready: multiprocessing.Queue) -> None:
    waiting = len(processes)
    deadline = time.monotonic() + 120
    while waiting:
        try:
            ready.get(timeout=0.2)
            waiting -= 1
        except queue.Empty:
            if any(not p.is_alive() for p in processes) or time.monotonic() > deadline:
                raise OSError("a worker failed to start (see its log above)") from None


def _serve_metrics(address: str) -> None:
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    host, _, port = address.rpartition(":")
    start_http_server(int(port), host.strip("[]"), registry=registry)
