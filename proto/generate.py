"""Regenerate the Python bindings of the policy contract.

    python proto/generate.py            # writes policy/v1/*_pb2*.py at the top of the repository
    python proto/generate.py --out DIR  # writes DIR/policy/v1/... instead (the staleness test)

proto/ holds the .proto files; the bindings live in the `policy` package beside
policyd/ and smtpedge/ and are committed; tests/test_proto.py fails when they
are stale.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]  # no type information

ROOT = Path(__file__).resolve().parent  # proto/
REPOSITORY = ROOT.parent
PROTOS = sorted(p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*.proto"))


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *PROTOS,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPOSITORY, help="output directory")
    generate(parser.parse_args().out)


if __name__ == "__main__":
    main()
