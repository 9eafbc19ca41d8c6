"""smtp_server_get_dynamic_parameters: a connection's listener parameters
computed by the policy before the banner (with KumoMTA's `via` cidr-map on the
local address), over the policy's listener, the edge's flags still first;
through the real daemon and edge over SMTP."""

from __future__ import annotations

import pytest

from policyd.extensions.listener import dynamic
from tests.smtpclient import RawClient

POLICY = r"""
kumo.on('init', function()
  kumo.start_esmtp_listener { listen = '127.0.0.1:2025', banner = 'static banner',
                              max_recipients_per_message = 5 }
end)
kumo.on('smtp_server_get_dynamic_parameters', function(listener, conn_meta)
  conn_meta:set_meta('x_listener', listener)
  return kumo.serde.json_parse [[{
    "banner": "dynamic banner",
    "hostname": "mx.dynamic.example",
    "max_recipients_per_message": 1,
    "via": {
      "127.0.0.0/8": { "banner": "loopback banner" },
      "127.0.0.1": { "banner": "exactly this address" },
      "10.0.0.1": { "banner": "another address" }
    }
  }]]
end)
kumo.on('smtp_server_data', function(msg, conn_meta)
  msg:append_header('X-Listener', conn_meta:get_meta('x_listener'))
end)
"""


def test_the_connection_is_shaped_by_the_policy(stack_factory) -> None:
    stack = stack_factory(POLICY)
    with RawClient(stack.port) as client:
        # the most specific via block; the edge's --hostname wins over the policy's
        assert client.reply() == b"220 mx.test exactly this address\r\n"
        client.command(b"EHLO client.test")
        client.command(b"MAIL FROM:<a@example.com>")
        assert client.command(b"RCPT TO:<b@example.com>") == b"250 OK\r\n"
        assert client.command(b"RCPT TO:<c@example.com>") == (
            b"452 4.5.3 Error: too many recipients\r\n"
        )
        assert client.command(b"DATA").startswith(b"354")
        client.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
        assert client.reply().startswith(b"250 OK ids=")
    (entry,) = stack.stored_entries()
    assert entry.message.endswith(
        b"X-Listener: " + f"127.0.0.1:{stack.port}".encode() + b"\r\n\r\nbody\r\n"
    )


@pytest.mark.parametrize(
    ("result", "error"),
    [
        ("42", "must return a table of listener parameters or nil, got number"),
        ("{ relay_hosts = {'0.0.0.0/0'} }", "unknown parameter relay_hosts"),
        ("{ via = { ['not an ip'] = {} } }", "'not an ip' is not an IP address or CIDR block"),
        ("{ max_message_size = -1 }", "max_message_size must be a positive integer"),
    ],
)
def test_a_bad_answer_refuses_the_connection(stack_factory, result: str, error: str) -> None:
    stack = stack_factory(
        f"kumo.on('smtp_server_get_dynamic_parameters', function() return {result} end)"
    )
    with RawClient(stack.port) as client:
        assert client.reply() == b"421 4.3.0 mx.test technical difficulties\r\n"
        assert client.rest_until_close() == b""
    (logged,) = [e for e in stack.daemon.log_lines() if e.get("msg") == "policy error"]
    assert error in logged["error"]


def test_nil_keeps_the_policy_s_listener(stack_factory) -> None:
    stack = stack_factory(r"""
kumo.on('init', function()
  kumo.start_esmtp_listener { listen = '127.0.0.1:2025', banner = 'static banner' }
end)
kumo.on('smtp_server_get_dynamic_parameters', function() return nil end)
""")
    stack.edge.wait_for_log(lambda e: e.get("msg") == "policy stream up")  # it knows the listener
    with RawClient(stack.port) as client:
        assert client.reply() == b"220 mx.test static banner\r\n"


def test_ignored_keys_are_reported_and_via_matches_the_local_address() -> None:
    warnings: list[str] = []
    given = {"tls_certificate": "/x", "via": {"::/0": {"banner": "v6"}}, "banner": "top"}
    assert dynamic(given, "127.0.0.1", warnings.append) == {"banner": "top"}
    assert dynamic(given, "::1", warnings.append) == {"banner": "v6"}
    assert (
        warnings
        == [
            "smtp_server_get_dynamic_parameters: tls_certificate is accepted and ignored here "
            "(the edge's --tls-cert)"
        ]
        * 2
    )
