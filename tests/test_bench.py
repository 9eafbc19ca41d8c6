"""The benchmark harness in smoke mode, so it cannot rot (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_smoke_writes_its_results(tmp_path: Path) -> None:
    out = tmp_path / "results"
    subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=ROOT, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    result = json.loads((out / "result.json").read_text())
    assert set(result["smtp"]) == {
        "ceiling: bare aiosmtpd (uvloop)",
        "bare aiosmtpd (asyncio loop)",
        "edge + daemon, all-stages policy",
        "edge + daemon, typical policy",
        "edge (2 workers) + daemon, typical policy",
    }
    for config in result["smtp"].values():
        assert config["transactions_per_second"] > 0
        assert config["latency_ms"]
        assert all(seconds > 0 for seconds in config["cpu_seconds_per_1000"].values())
    assert result["daemon_only"]["closed_loop"]
    assert result["memory"]["edge_rss_mb"] > 0
    assert "ratio of ceiling" in (out / "table.md").read_text()
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
