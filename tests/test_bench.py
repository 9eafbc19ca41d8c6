"""The benchmark harness, so it cannot rot: smoke mode end to end, the production
defaults it claims to measure, and its load generator failing loudly (no timing
assertions)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

import bench
from bench.__main__ import CONFIGS, TYPICAL
from bench.machine import SHM, filesystem
from bench.smtp_load import smtp_source
from bench.stacks import Stack
from tests.procs import environment

ROOT = Path(__file__).resolve().parent.parent
RELAYING = {c.name for c in CONFIGS if c.relay}
EDGES = {c.name for c in CONFIGS if c.policy is not None}


def check_shape(results: dict) -> None:
    assert set(results) == {c.name for c in CONFIGS}
    for name, r in results.items():
        assert r["transactions_per_second"] > 0
        assert r["latency_ms"]
        counted = r["cpu_seconds_per_1000"]
        assert set(counted) == ({"policyd", "smtpedge"} if name in EDGES else {"bare"})
        assert all(seconds > 0 for seconds in counted.values())
        assert abs(r["cpu_seconds_per_1000_total"] - sum(counted.values())) < 1e-9
        outside = r["cpu_seconds_per_1000_not_counted"]
        assert set(outside) == (
            {"sink", "load generator"} if name in RELAYING else {"load generator"}
        )
        assert all(seconds > 0 for seconds in outside.values())
        assert r["ratio_of_baseline"] > 0 and r["cpu_ratio_of_baseline"] > 0
    for config in CONFIGS:  # relay mode against the bare relaying server, the rest the ceiling
        r = results[config.name]
        assert r["baseline"] == (config.baseline or CONFIGS[0].name)
        baseline = results[r["baseline"]]
        rate = r["transactions_per_second"] / baseline["transactions_per_second"]
        assert r["ratio_of_baseline"] == pytest.approx(rate)
        cpu = r["cpu_seconds_per_1000_total"] / baseline["cpu_seconds_per_1000_total"]
        assert r["cpu_ratio_of_baseline"] == pytest.approx(cpu)


def test_bench_smoke_writes_its_results(tmp_path: Path) -> None:
    out = tmp_path / "results"
    subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=ROOT, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    result = json.loads((out / "result.json").read_text())
    on_shm = filesystem(SHM) == "tmpfs"  # the default, when /dev/shm is a tmpfs
    assert result["machine"]["work_dir"].startswith(f"{SHM}/") == on_shm
    if on_shm:
        assert result["machine"]["work_dir_filesystem"] == "tmpfs"
    assert set(result["smtp"]) == set(result["load_shapes"]) == {"light", "saturating"}
    for results in result["smtp"].values():
        check_shape(results)
    idle = result["idle_command_latency"]
    assert set(idle["grpc_floor"]) == {
        "Unix socket",
        "TCP loopback",
        "TCP loopback, grpcio's default engine (EventEngine)",
    }
    assert all(r["p50_ms"] > 0 for r in idle["grpc_floor"].values())
    assert all(r["server_cpu_us"] > 0 < r["client_cpu_us"] for r in idle["grpc_floor"].values())
    for level in result["daemon_only"]["closed_loop"].values():
        assert level["decisions"] > 0 and level["daemon_cpu_us_per_decision"] > 0
    cost = result["decision_cost"]
    assert cost["evaluation_us_log_off"] > 0 and cost["evaluation_us_log_file"] > 0
    assert result["memory"]["edge_rss_mb"] > 0
    table = (out / "table.md").read_text()
    assert "saturating load" in table and "tmpfs" in table and "floor" in table
    assert "the log costs" in table
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def metrics(args: list[str]) -> str:
    address = args[args.index("--metrics") + 1]
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        return response.read().decode()


TYPICAL_EVENTS = ["smtp_server_mail_from", "smtp_server_rcpt_to"]


def test_stacks_run_production_defaults(tmp_path: Path) -> None:
    """The decision log goes to a file and both programs serve their metrics."""
    with Stack("typical", TYPICAL, tmp_path) as stack:
        smtp_source(stack.port, 2, 1)
        assert "policyd_evaluations" in metrics(stack.procs["policyd"].args)
        assert "smtpedge_sessions" in metrics(stack.procs["smtpedge"].args)
    lines = (stack.workdir / "decisions.jsonl").read_text().splitlines()
    decisions = [json.loads(line) for line in lines]
    handled = sorted(d["event"] for d in decisions if d["event"] in TYPICAL_EVENTS)
    assert handled == sorted(TYPICAL_EVENTS * 2)  # MAIL FROM and RCPT TO of two transactions
    # A session that starts before the edge's stream has heard which events the
    # policy handles asks about the others too; those decisions are plain continues.
    assert all(d["action"] == "continue" for d in decisions if d["event"] not in TYPICAL_EVENTS)


def test_python_load_fails_loudly_on_a_refusal() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:

        def refuse() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"554 5.3.2 not today\r\n")

        threading.Thread(target=refuse, daemon=True).start()
        port = server.getsockname()[1]
        run = subprocess.run(
            [sys.executable, "-m", "bench.py_load", "--port", str(port), "--sessions", "1",
             "--messages", "5", "--seconds", "10"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert run.returncode == 1
    assert "554 5.3.2 not today" in run.stderr


def test_against_runs_the_other_trees_code(tmp_path: Path) -> None:
    """A Config with a tree imports that checkout's programs, not this one's, with
    gRPC's engine setting as the operator left it (for that tree to choose)."""
    from dataclasses import replace

    tree = tmp_path / "tree"
    (tree / "policyd").mkdir(parents=True)
    (tree / "policyd" / "__init__.py").write_text("")
    (tree / "policyd" / "__main__.py").write_text(
        "import os, sys; sys.exit(f'the other tree {os.environ.get(\"GRPC_EXPERIMENTS\")}')"
    )
    env = replace(TYPICAL, tree=tree).env()
    assert TYPICAL.env() is None and env is not None
    run = subprocess.run(
        [sys.executable, "-m", "policyd"],
        cwd=ROOT, env=environment(env), capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 1 and f"the other tree {bench.OPERATOR_ENGINE}" in run.stderr


def test_dkim_cost_verifies_what_it_measures() -> None:
    from bench import dkim_cost

    (row,) = dkim_cost.run((10_000,), repeats=1)
    assert row["bytes"] == 10_000 and row["cpu_ms"] > 0 and row["wall_ms"] > 0
    assert "| 10,000 B |" in dkim_cost.table([row])
