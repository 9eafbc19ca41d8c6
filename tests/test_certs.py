"""policyctl certs: private keys are never readable by others, not even for a moment."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from policyd.certs import DevCA, write_private


@pytest.fixture
def open_umask():
    """A umask that lets new files be read by everyone, as on many machines."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_keys_are_created_owner_only(tmp_path: Path, monkeypatch, open_umask) -> None:
    # Without chmod (as if the process died right after writing), every key is
    # already 0600: it was created so, not tightened afterwards.
    monkeypatch.setattr(Path, "chmod", lambda self, mode: None)
    ca = DevCA(tmp_path)
    ca.issue("server", "localhost", ["localhost"], server=True)
    for name in ("ca.key", "server.key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((tmp_path / "server.crt").stat().st_mode) == 0o644


def test_an_existing_readable_key_file_is_closed_before_the_key_is_written(
    tmp_path: Path, open_umask
) -> None:
    path = tmp_path / "old.key"
    path.write_bytes(b"an old, longer secret that must not survive")
    path.chmod(0o644)
    write_private(path, b"new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == b"new"
