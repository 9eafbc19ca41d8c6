"""The benchmark's result as one chart (chart.png): throughput, CPU per transaction
stacked by process, and the latency distribution under each load shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PROCESS_COLORS = {"bare": "#777777", "smtpedge": "#1f77b4", "policyd": "#ff7f0e"}
SHAPE_SHADES = {"light": 0.55, "saturating": 1.0}  # bar opacity per load shape
BAR = 0.38


def throughput(ax: Any, smtp: dict[str, dict], names: list[str]) -> None:
    for offset, (key, results) in enumerate(smtp.items()):
        ys = [y + offset * BAR for y in range(len(names))]
        rates = [results[n]["transactions_per_second"] for n in names]
        ax.barh(ys, rates, BAR, label=f"{key} load", color="#2ca02c", alpha=SHAPE_SHADES[key])
        for y, rate, name in zip(ys, rates, names, strict=True):
            ax.text(rate, y, f" {rate:.0f} ({results[name]['ratio_of_baseline']:.0%})",
                    va="center", fontsize=8)  # fmt: skip
    ax.set_xlabel("transactions per second (ratio of its baseline)")
    ax.set_title("Throughput")
    ax.set_xlim(
        0, max(r["transactions_per_second"] for s in smtp.values() for r in s.values()) * 1.3
    )
    ax.legend(fontsize=8, loc="lower right")


def cpu(ax: Any, smtp: dict[str, dict], names: list[str]) -> None:
    """Milliseconds of CPU per transaction, one stacked bar per configuration and shape."""
    seen: set[str] = set()
    for offset, (key, results) in enumerate(smtp.items()):
        for y, name in enumerate(names):
            left = 0.0
            for process, seconds in results[name]["cpu_seconds_per_1000"].items():
                color = PROCESS_COLORS[process]
                label = process if process not in seen else None
                seen.add(process)
                ax.barh(y + offset * BAR, seconds, BAR, left=left, label=label, color=color,
                        alpha=SHAPE_SHADES[key])  # fmt: skip
                left += seconds
            ax.text(left, y + offset * BAR, f" {left:.2f} ({key})", va="center", fontsize=8)
    ax.set_xlabel("CPU ms per transaction, by process (light bars: light load)")
    ax.set_title("CPU per transaction")
    ax.set_xlim(0, ax.get_xlim()[1] * 1.3)
    ax.legend(fontsize=8, loc="lower right")


def latency(ax: Any, results: dict[str, dict], title: str) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for name, r in results.items():
        samples = sorted(r["latency_ms"])
        if samples:
            ax.plot(samples, [(i + 1) / len(samples) for i in range(len(samples))], label=name)
    ax.set_xscale("log")
    # Labels only at 1, 2 and 5 of each decade, in plain numbers: the log axis's
    # default labels every minor tick when the data spans less than a decade.
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("transaction latency, ms (log)")
    ax.set_ylabel("fraction of transactions")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7)


def chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    smtp = result["smtp"]
    names = list(next(iter(smtp.values())))
    fig, ((bars, cpus), (light, saturating)) = plt.subplots(2, 2, figsize=(16, 10))
    throughput(bars, smtp, names)
    cpu(cpus, smtp, names)
    for ax in (bars, cpus):
        ax.set_yticks([y + BAR / 2 for y in range(len(names))], names if ax is bars else [])
        ax.invert_yaxis()
    latency(light, smtp["light"], "Latency under the light load (probe client)")
    latency(saturating, smtp["saturating"], "Latency under the saturating load")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
