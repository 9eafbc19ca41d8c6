"""The committed gRPC bindings are exactly what `python proto/generate.py` makes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ("policy_pb2.py", "policy_pb2.pyi", "policy_pb2_grpc.py")


def test_generated_code_is_current(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "proto" / "generate.py"), "--out", str(tmp_path)], check=True
    )
    for name in GENERATED:
        fresh = (tmp_path / "policy" / "v1" / name).read_bytes()
        committed = (ROOT / "policy" / "v1" / name).read_bytes()
        assert committed == fresh, f"policy/v1/{name} is stale: run python proto/generate.py"
