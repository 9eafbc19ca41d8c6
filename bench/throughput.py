"""SMTP throughput and CPU per transaction, for every configuration under both load shapes.

Rounds interleave the configurations (this machine's speed drifts over minutes,
so each configuration sees the same drift); within a round each configuration's
processes serve the light load and then the saturating one. Each figure is the
median of the rounds, taken on its own. CPU is read per process (with its
children) around each load and divided by the transactions that reached their
destination, checked against the generator's count; the total counts the
servers measured, not the relay's sink nor the load generator, which are
reported beside it. Ratios are against the configuration's baseline (the
ceiling, or the bare relaying server for relay mode) in the same run.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.py_load import saturating_load
from bench.smtp_load import LoadRun, light_load, percentile, smtp_source
from bench.stacks import OUTSIDE, Config, Stack, cpu_seconds

LATENCY_SAMPLES = 2000  # latencies kept per configuration for the chart


@dataclass(frozen=True)
class Shape:
    key: str
    description: str
    run: Callable[[int], LoadRun]


def shapes(light_messages: int, saturating_messages: int, saturating_seconds: float) -> list[Shape]:
    return [
        Shape(
            "light",
            "smtp-source (C), 32 sessions, plus a probe timing transactions beside it",
            lambda port: light_load(port, light_messages, 32),
        ),
        Shape(
            "saturating",
            "16 Python sessions in 2 processes (bench/py_load.py), competing for the cores",
            lambda port: saturating_load(port, saturating_messages, saturating_seconds),
        ),
    ]


def measure(stack: Stack, shape: Shape) -> dict:
    """One load on running processes: throughput, latency, CPU per 1,000 transactions."""
    procs = stack.processes()
    before = {name: cpu_seconds(p) for name, p in procs.items()}
    stored = stack.stored()
    run = shape.run(stack.port)
    per_1000 = {n: (cpu_seconds(p) - before[n]) / run.transactions * 1000 for n, p in procs.items()}
    if stack.stored() - stored != run.transactions:
        raise RuntimeError(f"{run.transactions} sent, {stack.stored() - stored} delivered")
    counted = {n: s for n, s in per_1000.items() if n not in OUTSIDE}
    outside = {n: s for n, s in per_1000.items() if n in OUTSIDE}
    return {
        "transactions": run.transactions,
        "transactions_per_second": run.transactions / run.seconds,
        "latency_ms": run.latency_ms,
        "cpu_seconds_per_1000": counted,
        "cpu_seconds_per_1000_total": sum(counted.values()),
        "cpu_seconds_per_1000_not_counted": {
            **outside,
            "load generator": run.load_cpu_seconds / run.transactions * 1000,
        },
    }


def median_of(rounds: list[dict]) -> dict:
    """Each figure's median over the rounds; latencies from the median round by throughput."""
    by_rate = sorted(rounds, key=lambda r: r["transactions_per_second"])
    latencies = by_rate[len(by_rate) // 2]["latency_ms"]

    def median(key: str) -> dict[str, float]:
        return {n: statistics.median(r[key][n] for r in rounds) for n in rounds[0][key]}

    return {
        "transactions_per_second": statistics.median(r["transactions_per_second"] for r in rounds),
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p99_ms": percentile(latencies, 99),
        "latency_ms": latencies[:: max(1, len(latencies) // LATENCY_SAMPLES)],
        "cpu_seconds_per_1000": median("cpu_seconds_per_1000"),
        "cpu_seconds_per_1000_total": statistics.median(
            r["cpu_seconds_per_1000_total"] for r in rounds
        ),
        "cpu_seconds_per_1000_not_counted": median("cpu_seconds_per_1000_not_counted"),
        "rounds": [round(r["transactions_per_second"], 1) for r in rounds],
    }


def with_ratios(results: dict[str, dict], configs: list[Config]) -> dict[str, dict]:
    for config in configs:
        result = results[config.name]
        baseline = results[config.baseline or configs[0].name]
        result["baseline"] = config.baseline or configs[0].name
        result["ratio_of_baseline"] = (
            result["transactions_per_second"] / baseline["transactions_per_second"]
        )
        result["cpu_ratio_of_baseline"] = (
            result["cpu_seconds_per_1000_total"] / baseline["cpu_seconds_per_1000_total"]
        )
    return results


def smtp_throughput(
    rounds: int, workdir: Path, configs: list[Config], load: list[Shape], warm_up: int
) -> dict[str, dict[str, dict]]:
    """{shape: {configuration: medians and ratios}}."""
    runs: dict[str, dict[str, list[dict]]] = {s.key: {c.name: [] for c in configs} for s in load}
    for round_ in range(rounds):
        for number, config in enumerate(configs):
            with Stack(f"round{round_}-config{number}", config, workdir) as stack:
                smtp_source(stack.port, warm_up, 4)
                for shape in load:
                    runs[shape.key][config.name].append(measure(stack, shape))
    return {
        key: with_ratios({name: median_of(r) for name, r in by_config.items()}, configs)
        for key, by_config in runs.items()
    }
