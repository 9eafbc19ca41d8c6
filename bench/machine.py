"""Where the benchmark runs: the work directory, its file system, the machine.

The Maildirs go on tmpfs by default. On a real disk every server waits for
fsync, and the wait hides what a transaction costs in CPU: the edge and the
bare server look alike because both are bound by the disk (issue 15). `--dir`
puts the work directory elsewhere (a disk, to see that cost too); the result
always says which file system it was on.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

SHM = Path("/dev/shm")


def filesystem(path: Path) -> str:
    """The type of the file system holding `path`: that of the deepest mount point above it."""
    path = path.resolve()
    deepest, fstype = -1, "unknown"
    for partition in psutil.disk_partitions(all=True):
        mount = Path(partition.mountpoint)
        if path.is_relative_to(mount) and len(mount.parts) >= deepest:
            deepest, fstype = len(mount.parts), partition.fstype
    return fstype


def default_parent() -> Path | None:
    """/dev/shm when it is a tmpfs; otherwise None (the system's temporary directory),
    with a warning, since fsync there may bound every configuration alike."""
    if SHM.is_dir() and filesystem(SHM) == "tmpfs":
        return SHM
    print(
        f"warning: {SHM} is not a tmpfs; the Maildirs go to {tempfile.gettempdir()}, "
        "where fsync may hide the CPU cost per transaction",
        file=sys.stderr,
    )
    return None


@contextmanager
def work_directory(chosen: Path | None) -> Iterator[Path]:
    """A fresh directory under `chosen` (or the default parent), removed afterwards."""
    parent = chosen if chosen is not None else default_parent()
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-", dir=parent) as tmp:
        yield Path(tmp)


def facts(workdir: Path) -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "work_dir": str(workdir),
        "work_dir_filesystem": filesystem(workdir),
    }
