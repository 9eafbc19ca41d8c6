"""Durable Maildir delivery: a message is in new/ before the client hears 250.

Write to tmp/, fsync the file, rename into new/, fsync new/. A crash at any
point leaves either nothing in new/ or the complete message. The messages a
transaction was split into are stored all or none (a crash between two renames
can leave some in new/ without the client having heard 250: a duplicate when
it retries, never a loss).
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from pathlib import Path

_counter = itertools.count()


def _safe_host(name: str) -> str:
    return name.replace("/", "\\057").replace(":", "\\072")


class Maildir:
    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("tmp", "new", "cur"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self._host = _safe_host(socket.gethostname())

    def unique_name(self, message_id: str) -> str:
        now = time.time()
        return (
            f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(_counter)}"
            f"_{message_id}.{self._host}"
        )

    def deliver(self, messages: list[tuple[bytes, str]]) -> list[str]:
        """Stores the messages of one transaction durably, all or none (blocking:
        run it in a thread), and returns their file names. Each is
        written and fsynced in tmp/ first, then all are moved into new/; if any
        step fails, those already moved are taken back out before the error is
        raised, so a refused transaction leaves nothing behind."""
        names: list[str] = []
        moved: list[str] = []
        try:
            for data, message_id in messages:
                names.append(self._write_tmp(data, message_id))
            for name in names:
                os.rename(self.root / "tmp" / name, self.root / "new" / name)
                moved.append(name)
            self._sync_new()
        except BaseException:
            for name in names:
                (self.root / ("new" if name in moved else "tmp") / name).unlink(missing_ok=True)
            raise
        return names

    def _write_tmp(self, data: bytes, message_id: str) -> str:
        name = self.unique_name(message_id)
        tmp = self.root / "tmp" / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        return name

    def _sync_new(self) -> None:
        dir_fd = os.open(self.root / "new", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
