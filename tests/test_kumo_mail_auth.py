"""KumoMTA's own `policy-extras.mail_auth`, copied beside a policy as a user
would copy it, runs unchanged on this service's SPF, DKIM, DMARC, ARC, iprev
and Authentication-Results. We do not ship KumoMTA's files: the test reads them
from a KumoMTA checkout (KUMOMTA_GIT, a git directory) and is skipped without one."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.harness import Servers
from tests.mailstore import read_maildir
from tests.smtpclient import send_message
from tests.test_dkim import MESSAGE, RSA_RECORD, sign
from tests.test_dns import DnsServer

KUMOMTA_GIT = Path(os.environ.get("KUMOMTA_GIT", "/work/.mirror/KumoCorp+kumomta/repo"))
EXTRAS = ("mail_auth", "policy_utils", "typing")


def kumomta_file(name: str) -> str | None:
    if not KUMOMTA_GIT.is_dir():
        return None
    shown = subprocess.run(
        ["git", "--git-dir", str(KUMOMTA_GIT), "show", f"HEAD:assets/policy-extras/{name}.lua"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return shown.stdout if shown.returncode == 0 else None


POLICY = r"""
local kumo = require 'kumo'
local mail_auth = require 'policy-extras.mail_auth'
kumo.on('smtp_server_message_received', function(msg)
  local result = mail_auth.check(msg)
  if result.dmarc and result.dmarc.result == 'fail' then
    kumo.reject(550, '5.7.1 DMARC: ' .. result.dmarc.reason)
  end
end)
"""


def test_kumomta_s_mail_auth_helper_runs_unchanged(tmp_path, servers: Servers) -> None:
    files = {name: kumomta_file(name) for name in EXTRAS}
    if any(text is None for text in files.values()):
        pytest.skip(f"no KumoMTA checkout at {KUMOMTA_GIT} (set KUMOMTA_GIT)")
    policy_dir = tmp_path / "policy"
    for name, text in files.items():
        (policy_dir / "policy-extras").mkdir(parents=True, exist_ok=True)
        (policy_dir / "policy-extras" / f"{name}.lua").write_text(text or "")
    (policy_dir / "policy.lua").write_text(POLICY)
    half = len(RSA_RECORD) // 2
    dns = DnsServer(
        tmp_path,
        {
            "rsa._domainkey.example.com": {"TXT": [[RSA_RECORD[:half], RSA_RECORD[half:]]]},
            "_dmarc.example.com": {"TXT": [["v=DMARC1; p=reject"]]},
            "example.com": {"TXT": [["v=spf1 -all"]]},
            "1.0.0.127.in-addr.arpa": {"PTR": ["localhost.test."]},
            "localhost.test": {"A": ["127.0.0.1"]},
        },
    )
    try:
        _, address = servers.daemon(
            policy_dir / "policy.lua", tmp_path, "--dns-server", dns.address
        )
        _, port = servers.edge(address, tmp_path)

        sender = b"alice@example.com"
        assert send_message(port, sign(MESSAGE, "rsa"), sender).startswith(b"250 OK ids=")
        assert send_message(port, MESSAGE, sender).startswith(b"550 5.7.1 DMARC: ")
        (stored,) = read_maildir(tmp_path / "mail")
        header = stored.message.split(b"\r\nFrom:", 1)[0]
        for result in (b"\tdkim=pass", b"\tspf=fail", b"\tiprev=pass", b"\tdmarc=pass",
                       b"\tarc=none", b"\tauth=none"):  # fmt: skip
            assert result in header, header
    finally:
        dns.proc.stop()
