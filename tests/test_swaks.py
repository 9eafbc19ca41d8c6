"""A real third-party SMTP client (swaks) through the edge."""

from __future__ import annotations

import shutil
import subprocess

import pytest

POLICY = r"""
kumo.on('smtp_server_rcpt_to', function(rcpt)
  if rcpt.user == 'nobody' then kumo.reject(550, '5.1.1 unknown user') end
end)
kumo.on('smtp_server_data', function(msg) msg:append_header('X-Checked', 'yes') end)
"""


def swaks(port: int, *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("swaks")
    assert exe, "swaks is not installed: run scripts/install-system-deps"
    return subprocess.run(
        [exe, "--server", "127.0.0.1", "--port", str(port), "--helo", "client.test", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.policy(POLICY)
def test_swaks_delivers(stack) -> None:
    result = swaks(
        stack.port,
        "--from",
        "a@example.com",
        "--to",
        "b@example.com",
        "--header",
        "Subject: from swaks",
        "--body",
        "hello from swaks",
    )
    assert result.returncode == 0, result.stdout
    assert "<-  250 OK ids=" in result.stdout
    (stored,) = stack.stored()
    assert b"Subject: from swaks\r\n" in stored
    assert b"\r\nX-Checked: yes\r\n\r\nhello from swaks" in stored


@pytest.mark.policy(POLICY)
def test_swaks_sees_the_policy_reject(stack) -> None:
    result = swaks(stack.port, "--from", "a@example.com", "--to", "nobody@example.com")
    assert result.returncode != 0
    assert "<** 550 5.1.1 unknown user" in result.stdout
    assert stack.stored() == []
