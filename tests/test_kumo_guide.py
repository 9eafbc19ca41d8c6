"""A whole reception policy in the shape of KumoMTA's configuration guide,
through the real daemon and edge processes over SMTP: init with a listener,
listener domains from TOML through a policy-extras-style module of our own,
memoize, outbound configuration accepted and ignored, the guide's SMTP
smuggling check, throttles; and
KumoMTA's relaying rule refusing a peer not in relay_hosts."""

from __future__ import annotations

import smtplib
import subprocess
import sys

import pytest

from tests.mailstore import read_maildir
from tests.smtpclient import RawClient

INIT = r"""
local kumo = require 'kumo'
package.path = '/opt/kumomta/etc/policy/?.lua;' .. package.path
local listener_domains = require 'policy-extras.listener_domains'

kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '/var/spool/kumomta/data', kind = 'RocksDB' }
  kumo.configure_local_logs { log_dir = '/var/log/kumomta' }
  kumo.start_esmtp_listener {
    listen = '0.0.0.0:25',
    hostname = 'mx.example.com',
    relay_hosts = { '10.0.0.0/8' },  -- the test's client, on loopback, is not listed
  }
end)

kumo.on('get_listener_domain',
        listener_domains:setup { '/opt/kumomta/etc/policy/listener_domains.toml' })

kumo.on('smtp_server_message_received', function(msg)
  -- Protect against SMTP smuggling, as the guide's example does.
  local failed = msg:check_fix_conformance('NON_CANONICAL_LINE_ENDINGS', '')
  if failed then
    kumo.reject(552, string.format('5.6.0 %s', failed))
  end
  local result = kumo.make_throttle('guide-per-sender-' .. msg:sender().domain, '2/hour'):throttle()
  if result.throttled then kumo.reject(451, '4.7.1 slow down') end
  kumo.log_info('received for', msg:recipient().domain)
  msg:append_header('X-Guide-Tenant', msg:get_meta('tenant') or 'none')
end)

kumo.on('smtp_server_mail_from', function(sender, conn_meta)
  conn_meta:set_meta('tenant', listener_domains.tenant_of(sender.domain))
end)
"""

EXTRAS = r"""
-- Our own module in the shape of KumoMTA's policy-extras: listener domains
-- from TOML data files, loaded through kumo.memoize.
local mod = {}

local load = kumo.memoize(function(files)
  local out = {}
  for _, file in ipairs(files) do
    for domain, params in pairs(kumo.serde.toml_load(file)) do out[domain] = params end
  end
  return out
end, { name = 'guide_listener_domains', ttl = '5 minutes', capacity = 10 })

function mod:setup(files)
  mod.files = files
  return function(domain, listener, conn_meta)
    local params = load(files)[domain]
    if params == nil then return nil end
    return kumo.make_listener_domain { relay_to = params.relay_to, relay_from = params.relay_from }
  end
end

function mod.tenant_of(domain)
  local params = load(mod.files)[domain]
  return params and params.tenant or 'unknown'
end

return mod
"""

DOMAINS = """
["inbound.example"]
relay_to = true

["customer.example"]
relay_from = ["10.9.0.0/16"]
tenant = "customer"
"""


@pytest.fixture
def guide(tmp_path, write_policy):
    write_policy(EXTRAS, "policy-extras/listener_domains.lua")
    write_policy(DOMAINS, "listener_domains.toml")
    return write_policy(INIT)


def test_policyctl_check_loads_it_and_names_what_is_ignored(guide) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "policyd.ctl", "check", str(guide)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "policy-extras/listener_domains.lua" in result.stdout
    assert "listener_domains.toml" in result.stdout
    assert "compatibility: policy.lua:7: kumo.define_spool: accepted and ignored" in result.stderr
    strict = subprocess.run(
        [sys.executable, "-m", "policyd.ctl", "check", "--strict", str(guide)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert strict.returncode == 1


def test_it_serves_mail_and_refuses_to_relay_for_an_unlisted_peer(
    guide, process_stack_factory
) -> None:
    stack = process_stack_factory(guide.read_text())
    with smtplib.SMTP("127.0.0.1", stack.port, timeout=30) as client:
        client.ehlo("client.test")
        assert client.mail("a@customer.example") == (250, b"OK")
        code, text = client.rcpt("x@elsewhere.example")
        assert code == 550
        assert text.startswith(b"5.7.1 relaying not permitted for 127.0.0.1:")
        assert client.rcpt("x@inbound.example") == (250, b"OK")
        code, _ = client.data(b"Subject: one\r\n\r\nbody\r\n")
        assert code == 250
    with RawClient(stack.port) as raw:
        raw.reply()
        raw.command(b"EHLO client.test")
        raw.command(b"MAIL FROM:<a@customer.example>")
        raw.command(b"RCPT TO:<x@inbound.example>")
        raw.command(b"DATA")
        raw.send(b"Subject: two\r\n\r\nbody\n.\nMAIL FROM:<evil@x.example>\r\n.\r\n")
        assert raw.reply() == (
            b"552 5.6.0 Message has conformance issues: NON_CANONICAL_LINE_ENDINGS\r\n"
        )
    stored = read_maildir(stack.workdir / "mail")
    assert [s.recipients for s in stored] == [["x@inbound.example"]]
    assert b"X-Guide-Tenant: customer\r\n" in stored[0].message
    assert stored[0].received.startswith(b"Received: from client.test")
    logs = [e for e in stack.daemon.log_lines() if e.get("msg") == "policy log"]
    assert logs and logs[0]["text"] == "received for inbound.example"


def test_the_throttle_refuses_the_third_message_of_the_hour(guide, process_stack_factory) -> None:
    stack = process_stack_factory(guide.read_text())
    codes = []
    for _ in range(3):
        with smtplib.SMTP("127.0.0.1", stack.port, timeout=30) as client:
            client.ehlo("client.test")
            client.mail("a@throttled.example")
            client.rcpt("x@inbound.example")
            try:
                codes.append(client.data(b"Subject: t\r\n\r\nbody\r\n")[0])
            except smtplib.SMTPDataError as e:
                codes.append(e.smtp_code)
    assert codes == [250, 250, 451]
    assert len(read_maildir(stack.workdir / "mail")) == 2


def test_the_scan_names_unsupported_api_with_file_and_line(write_policy) -> None:
    from policyd import compat
    from policyd.runtime import LuaPolicy
    from policyd.source import PolicySource

    path = write_policy(
        "-- kumo.commented_out() is not a reference\n"
        "kumo.on('smtp_server_data', function(msg, conn_meta)\n"
        "  local r = kumo.spf.check_host(msg:sender().domain, conn_meta)\n"
        "  msg:parse_mime()\n"
        "  conn_meta:get_meta('x')\n"
        "  kumo.regex.compile('a+')\n"
        "end)\n"
        "kumo.on('smtp_client_rewrite_delivery_status', function() end)\n"
    )
    policy = LuaPolicy(PolicySource.at(path))
    assert [str(f) for f in compat.scan(policy.files, policy.provides)] == [
        "policy.lua:4: msg:parse_mime: not supported",
        "policy.lua:8: event 'smtp_client_rewrite_delivery_status': not supported",
    ]
