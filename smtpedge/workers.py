"""`--workers N`: N edge processes accepting on one port (SO_REUSEPORT).

The parent supervises: it spawns the workers, forwards SIGTERM/SIGINT to them
(each drains its sessions as a single edge does), restarts one that dies, and
serves the metrics of all of them (prometheus_client's multiprocess mode).
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

from smtpedge.config import EdgeConfig, split_host_port

log = logging.getLogger("smtpedge.workers")


def _worker(config: EdgeConfig, loop: str, log_level: str, ready: multiprocessing.Queue) -> None:
    from smtpedge import logs
    from smtpedge.server import EdgeServer, run

    logs.configure(log_level)
    run(EdgeServer(config, on_ready=lambda: ready.put(os.getpid())).serve(), loop)


def serve_workers(config: EdgeConfig, workers: int, loop: str, log_level: str) -> int:
    host, port = split_host_port(config.listen)
    if port == 0:  # every worker must bind the same port
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, 0))
            config = replace(
                config, listen=f"{config.listen.rpartition(':')[0]}:{s.getsockname()[1]}"
            )
    metrics_dir = tempfile.mkdtemp(prefix="smtpedge-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    context = multiprocessing.get_context("spawn")
    ready: multiprocessing.Queue = context.Queue()
    args = (replace(config, metrics=None, worker=True), loop, log_level, ready)
    processes = [context.Process(target=_worker, args=args) for _ in range(workers)]
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(signal.SIGTERM))
    signal.signal(signal.SIGINT, lambda *_: stop.append(signal.SIGINT))
    for process in processes:
        process.start()
    try:
        started = 0
        while started < workers:
            try:
                started += bool(ready.get(timeout=0.2))
            except queue.Empty:
                if stop:
                    break
                if any(not p.is_alive() for p in processes):
                    raise OSError("a worker failed to start (see its log above)") from None
        if config.metrics and not stop:
            _serve_metrics(config.metrics)
        if not stop:
            log.info("listening", extra={"address": config.listen, "workers": workers})
        while not stop:
            for number, process in enumerate(processes):
                if not process.is_alive():
                    log.error("worker died; restarting", extra={"exitcode": process.exitcode})
                    processes[number] = context.Process(target=_worker, args=args)
                    processes[number].start()
            time.sleep(0.2)
        for process in processes:
            os.kill(process.pid, stop[0])  # type: ignore[arg-type]
        for process in processes:
            process.join(config.shutdown_grace + 5)
        return 0
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _serve_metrics(address: str) -> None:
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    host, port = split_host_port(address)
    start_http_server(port, host, registry=registry)
