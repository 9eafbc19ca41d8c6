"""kumo.spf.check_host and kumo.spf.check_msg through the real daemon and edge,
against a DNS server the test starts on loopback; results in KumoMTA's shape."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.harness import Servers
from tests.mailstore import read_maildir
from tests.smtpclient import RawClient, send_message
from tests.test_dns import DnsServer

ZONE = {
    "negative_ttl": 2,
    "pass.test": {"TXT": [["v=spf1 ip4:192.0.2.0/24 include:_spf.pass.test -all"]]},
    "_spf.pass.test": {"TXT": [["v=spf1 a:mail.pass.test ~all"]]},
    "mail.pass.test": {"A": ["127.0.0.1"]},
    "fail.test": {"TXT": [["v=spf1 ip4:192.0.2.1 -all exp=why.fail.test"]]},
    "why.fail.test": {"TXT": [["%{i} may not send for %{d}"]]},
    "soft.test": {"TXT": [["v=spf1 ~all"]]},
    "broken.test": {"TXT": [["v=spf1 ip4:300.1.1.1 -all"]]},
    "servfail.test": {"rcode": "SERVFAIL"},
    "silent.test": {"TXT": [["v=spf1 +all"]], "delay": 2},
    "helo.test": {"TXT": [["v=spf1 ip4:127.0.0.1 -all"]]},
}

POLICY = r"""
kumo.on('smtp_server_ehlo', function(domain, conn_meta)
  local helo = kumo.spf.check_host(domain, conn_meta)
  conn_meta:set_meta('x_helo_spf', helo.disposition)
end)
kumo.on('smtp_server_mail_from', function(sender, conn_meta)
  local spf = kumo.spf.check_host(sender.domain, conn_meta, sender.email)
  if spf.disposition == 'fail' then
    kumo.reject(550, '5.7.23 SPF: ' .. spf.result.reason)
  elseif spf.disposition == 'temperror' then
    kumo.reject(451, '4.7.24 SPF: try again later')
  elseif spf.disposition == 'permerror' then
    kumo.reject(550, '5.7.24 SPF: ' .. spf.result.reason)
  end
end)
kumo.on('smtp_server_message_received', function(msg)
  local spf = kumo.spf.check_msg(msg)
  local props = spf.result.props
  msg:append_header('X-SPF', string.format('%s %s %s mailfrom=%s helo=%s (%s) helo-check=%s',
    spf.disposition, spf.result.method, spf.result.result, props['smtp.mailfrom'],
    props['smtp.helo'], spf.result.reason, msg:get_meta('x_helo_spf')))
end)
"""


@pytest.fixture
def spf_stack(tmp_path, servers: Servers):
    dns = DnsServer(tmp_path, ZONE)
    policy = tmp_path / "policy.lua"
    policy.write_text(POLICY)
    _, address = servers.daemon(
        policy, tmp_path, "--dns-server", dns.address, "--eval-timeout", "2",
        "--dns-timeout", "0.3", "--dns-attempts", "1",
    )  # fmt: skip
    _, port = servers.edge(address, tmp_path, "--policy-timeout", "3")
    yield port, tmp_path
    dns.proc.stop()


def mail_from(port: int, sender: bytes, helo: bytes = b"helo.test") -> bytes:
    with RawClient(port) as client:
        client.reply()
        client.command(b"EHLO " + helo)
        return client.command(b"MAIL FROM:<" + sender + b">")


@pytest.mark.parametrize(
    ("sender", "reply"),
    [
        (b"a@fail.test", b"550 5.7.23 SPF: 127.0.0.1 may not send for fail.test\r\n"),
        (b"a@servfail.test", b"451 4.7.24 SPF: try again later\r\n"),
        (b"a@silent.test", b"451 4.7.24 SPF: try again later\r\n"),  # the server never answers
        (b"a@broken.test", b"550 5.7.24 SPF: invalid ip4 network '300.1.1.1'\r\n"),
        (b"a@soft.test", b"250 OK\r\n"),
        (b"a@none.test", b"250 OK\r\n"),
    ],
)
def test_check_host_at_mail_from(spf_stack, sender: bytes, reply: bytes) -> None:
    port, _ = spf_stack
    assert mail_from(port, sender) == reply


def test_check_msg_gives_kumomta_s_result_shape(spf_stack) -> None:
    port, workdir = spf_stack
    body = b"Subject: spf\r\n\r\nbody\r\n"
    reply = send_message(port, body, b"a@pass.test", (b"r@example.com",), b"helo.test")
    assert reply.startswith(b"250 OK ids=")
    (stored,) = read_maildir(workdir / "mail")
    assert (
        b"X-SPF: pass spf pass mailfrom=a@pass.test helo=helo.test"
        b" (matched 'include:_spf.pass.test' directive) helo-check=pass\r\n"
    ) in stored.message


CASES = r"""
[dns]
"pass.test" = { TXT = ["v=spf1 ip4:192.0.2.0/24 -all"] }
"fail.test" = { TXT = ["v=spf1 -all"] }
"servfail.test" = { fail = "SERVFAIL" }

[[case]]
name = "SPF from the test's own DNS answers"
peer = "192.0.2.1:40000"
steps = [
  { ehlo = "client.test" },
  { mail_from = "a@pass.test" },
  { mail_from = "a@fail.test", expect = "reject 550 5.7.23 SPF: matched '-all' directive" },
  { mail_from = "a@servfail.test", expect = "reject 451 4.7.24 SPF: try again later" },
]
"""


def test_policyctl_test_answers_spf_from_its_dns_tables(tmp_path) -> None:
    (tmp_path / "policy.lua").write_text(POLICY)
    (tmp_path / "policy.tests.toml").write_text(CASES)
    result = subprocess.run(
        [sys.executable, "-m", "policyd.ctl", "test", str(tmp_path / "policy.lua")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 0 failed" in result.stdout
