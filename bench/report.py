"""The benchmark's result as readable tables (table.md)."""

from __future__ import annotations


def _cpu(per_process: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds:.2f}" for name, seconds in per_process.items())


def setting(result: dict) -> str:
    """What every SMTP table measured: the defaults and where the Maildir was."""
    machine = result["machine"]
    return (
        "Every process runs with its production defaults: the daemon writes its decision log "
        "to a file, both programs log at INFO and serve `--metrics`, the edge and the ceiling "
        "run on uvloop (the edge's default), every other option is the default unless the "
        "configuration's name says otherwise. Maildirs are "
        f"fsynced as the edge does, on **{machine['work_dir_filesystem']}** "
        f"(`{machine['work_dir']}`); {machine['cpus']} CPUs."
    )


def smtp_table(smtp: dict, title: str, description: str, rounds: int) -> str:
    """One load shape's table: throughput, CPU per process and in total, both as ratios."""
    lines = [
        f"## {title}",
        "",
        f"Load: {description}. One connection per transaction (banner, EHLO, MAIL, RCPT, "
        f"1 KiB of DATA, QUIT). Median of {rounds} interleaved rounds, each figure on its own. "
        "CPU: seconds per 1,000 transactions per process (with its children); the total is "
        "the servers', without the relay's sink and the load generator (shown apart). "
        "Ratios are against the baseline in the same run: the ceiling, or for relay mode the "
        "bare relaying server. p50/p99: whole transactions.",
        "",
        "| configuration | tx/s | tx/s ratio | CPU s / 1000 tx | total | CPU ratio "
        "| p50 ms | p99 ms | not counted |",
        "|---|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for name, r in smtp.items():
        lines.append(
            f"| {name} | {r['transactions_per_second']:.0f} | {r['ratio_of_baseline']:.0%} "
            f"| {_cpu(r['cpu_seconds_per_1000'])} | {r['cpu_seconds_per_1000_total']:.2f} "
            f"| {r['cpu_ratio_of_baseline']:.2f}x | {r['latency_p50_ms']:.2f} "
            f"| {r['latency_p99_ms']:.2f} | {_cpu(r['cpu_seconds_per_1000_not_counted'])} |"
        )
    return "\n".join(lines) + "\n"


def smtp_tables(result: dict) -> list[str]:
    rounds = result["scale"]["rounds"]
    return [
        smtp_table(result["smtp"][key], f"SMTP transactions, {key} load", shape, rounds)
        for key, shape in result["load_shapes"].items()
    ]


def idle_table(idle: dict) -> list[str]:
    floor = idle["grpc_floor"]
    return [
        "## One SMTP command on an idle system (MAIL FROM round trip)",
        "",
        "| | p50 ms | p99 ms |",
        "|---|---:|---:|",
        *(
            f"| {name} | {idle[name]['p50_ms']:.3f} | {idle[name]['p99_ms']:.3f} |"
            for name in ("no policy call", "policy call")
        ),
        "",
        f"A policy call adds **{idle['added_p50_ms']:.3f} ms** (p50); the edge reaches the "
        "daemon over TCP loopback.",
        "",
        "The floor: a bare grpc.aio stream round trip (an echo servicer and one bidirectional "
        "stream with one message in flight, each in its own process on uvloop):",
        "",
        "| floor | p50 ms | p99 ms | server CPU µs | client CPU µs |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} "
            f"| {r['server_cpu_us']:.0f} | {r['client_cpu_us']:.0f} |"
            for name, r in floor.items()
        ),
        "",
    ]


def daemon_table(daemon: dict) -> list[str]:
    lines = [
        "## The daemon alone (typical policy, MAIL FROM, decision log to a file)",
        "",
        "| in flight | decisions/s | p50 ms | p99 ms | daemon CPU µs / decision |",
        "|---:|---:|---:|---:|---:|",
    ]
    for level, r in daemon["closed_loop"].items():
        lines.append(
            f"| {level} | {r['per_second']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {r['daemon_cpu_us_per_decision']:.0f} |"
        )
    half = daemon["at_half_rate"]
    return [
        *lines,
        "",
        f"Open loop at {half['per_second']:.0f} decisions/s: "
        f"p50 {half['p50_ms']:.2f} ms, p99 {half['p99_ms']:.2f} ms, "
        f"daemon CPU {half['daemon_cpu_us_per_decision']:.0f} µs / decision.",
        "",
    ]


def decision_cost_table(cost: dict) -> list[str]:
    return [
        "## The decision log's own cost (in process, typical policy, MAIL FROM)",
        "",
        f"One evaluation: {cost['evaluation_us_log_off']:.1f} µs of CPU with the decision log "
        f"off, {cost['evaluation_us_log_file']:.1f} µs writing it to a file: the log costs "
        f"**{cost['decision_log_us']:.1f} µs** per decision; writing one line alone "
        f"(DecisionLog.record) takes {cost['record_us']:.1f} µs.",
        "",
    ]


def memory_table(memory: dict) -> list[str]:
    return [
        "## Memory",
        "",
        f"- edge RSS with {memory['idle_connections']} idle connections: "
        f"{memory['edge_rss_mb']:.0f} MB (before: {memory['edge_rss_mb_before']:.0f} MB)",
        f"- daemon RSS with the example policy: {memory['daemon_rss_mb_example_policy']:.0f} MB",
        "",
    ]


def smtp_report(result: dict) -> str:
    """The SMTP tables alone (all `--steps` measures)."""
    return "\n".join([setting(result), "", *smtp_tables(result)])


def table(result: dict) -> str:
    return "\n".join(
        [
            smtp_report(result),
            *idle_table(result["idle_command_latency"]),
            *daemon_table(result["daemon_only"]),
            *decision_cost_table(result["decision_cost"]),
            *memory_table(result["memory"]),
        ]
    )
