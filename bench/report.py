"""The benchmark's result as a readable table and a chart."""

from __future__ import annotations

from pathlib import Path


def smtp_table(smtp: dict, title: str) -> str:
    lines = [
        f"## {title}",
        "",
        "smtp-source, one connection per transaction. Median of interleaved rounds; p50/p99:",
        "whole transactions timed by a probe client beside the load; CPU: seconds per 1,000",
        "transactions, per process.",
        "",
        "| configuration | tx/s | ratio of ceiling | p50 ms | p99 ms | CPU s / 1000 tx |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, r in smtp.items():
        cpu = ", ".join(f"{p} {s:.2f}" for p, s in r["cpu_seconds_per_1000"].items())
        lines.append(
            f"| {name} | {r['transactions_per_second']:.0f} | {r['ratio_of_ceiling']:.0%} "
            f"| {r['latency_p50_ms']:.2f} | {r['latency_p99_ms']:.2f} | {cpu} |"
        )
    return "\n".join(lines) + "\n"


def table(result: dict) -> str:
    lines = [smtp_table(result["smtp"], "SMTP transactions")]
    idle = result["idle_command_latency"]
    lines += [
        "",
        "## One SMTP command on an idle system (MAIL FROM round trip)",
        "",
        "| | p50 ms | p99 ms |",
        "|---|---:|---:|",
        *(
            f"| {name} | {idle[name]['p50_ms']:.3f} | {idle[name]['p99_ms']:.3f} |"
            for name in ("no policy call", "policy call")
        ),
        "",
        f"A policy call adds **{idle['added_p50_ms']:.3f} ms** (p50).",
        "",
        "## The daemon alone (typical policy, MAIL FROM)",
        "",
        "| in flight | decisions/s | p50 ms | p99 ms | daemon CPU s / 1000 |",
        "|---:|---:|---:|---:|---:|",
    ]
    daemon = result["daemon_only"]
    for level, r in daemon["closed_loop"].items():
        lines.append(
            f"| {level} | {r['per_second']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {r['daemon_cpu_seconds_per_1000']:.3f} |"
        )
    half = daemon["at_half_rate"]
    memory = result["memory"]
    lines += [
        "",
        f"Open loop at {half['per_second']:.0f} decisions/s (half the 8,000/s target): "
        f"p50 {half['p50_ms']:.2f} ms, p99 {half['p99_ms']:.2f} ms.",
        "",
        "## Memory",
        "",
        f"- edge RSS with {memory['idle_connections']} idle connections: "
        f"{memory['edge_rss_mb']:.0f} MB (before: {memory['edge_rss_mb_before']:.0f} MB)",
        f"- daemon RSS with the example policy: {memory['daemon_rss_mb_example_policy']:.0f} MB",
        "",
    ]
    return "\n".join(lines)


def chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    smtp = result["smtp"]
    names = list(smtp)
    fig, (bars, dist) = plt.subplots(1, 2, figsize=(13, 4.8))
    rates = [smtp[n]["transactions_per_second"] for n in names]
    colors = ["#555555", "#aaaaaa", "#1f77b4", "#2ca02c", "#98df8a"]
    bars.barh(names, rates, color=colors[: len(names)])
    for y, (rate, name) in enumerate(zip(rates, names, strict=True)):
        bars.text(rate, y, f" {rate:.0f}/s ({smtp[name]['ratio_of_ceiling']:.0%})", va="center")
    bars.set_xlabel("transactions per second")
    bars.set_title("Throughput")
    bars.invert_yaxis()
    bars.set_xlim(0, max(rates) * 1.35)
    for name in names:
        samples = sorted(smtp[name]["latency_ms"])
        if samples:
            fractions = [(i + 1) / len(samples) for i in range(len(samples))]
            dist.plot(samples, fractions, label=name)
    dist.set_xscale("log")
    dist.set_xlabel("transaction latency under load, ms (log)")
    dist.set_ylabel("fraction of transactions")
    dist.set_title("Latency distribution")
    dist.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
