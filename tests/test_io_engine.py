"""Each program chooses gRPC's I/O engine before grpc is imported (gRPC reads
the choice once, at import), and an operator's own GRPC_EXPERIMENTS stands."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from policy import io_engine

# Records GRPC_EXPERIMENTS as it is at the moment grpc is first imported.
PROBE = """
import importlib.abc, os, sys
seen = []
class Probe(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "grpc" and not seen:
            seen.append(os.environ.get("GRPC_EXPERIMENTS"))
        return None
sys.meta_path.insert(0, Probe())
import {module}
print(seen[0] if seen else "grpc not imported")
"""


def _seen_at_grpc_import(module: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != io_engine.ENVIRONMENT} | env
    run = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)],
        capture_output=True, text=True, check=True, env=environ,
    )  # fmt: skip
    return run.stdout.strip()


@pytest.mark.parametrize(
    "module", ["policyd.server", "policyd.ctl", "smtpedge.server", "bench.grpc_floor"]
)
def test_engine_chosen_before_grpc_loads(module: str) -> None:
    assert _seen_at_grpc_import(module) == io_engine.IOMGR


def test_operators_setting_stands() -> None:
    assert _seen_at_grpc_import("policyd.server", GRPC_EXPERIMENTS="") == ""
    environ = {io_engine.ENVIRONMENT: "event_engine_client"}
    assert io_engine.choose(environ) == "event_engine_client"
    assert io_engine.choose({}) == io_engine.IOMGR
