"""msg:set_sender and msg:set_recipient: a data-phase handler rewrites the
envelope; the stored or relayed message has the new one (the whole
transaction at smtp_server_data, one message at smtp_server_message_received),
and nothing that is not a mailbox reaches an upstream."""

from __future__ import annotations

import re

import pytest

from policy.reception import Envelope, changed
from policy.v1 import policy_pb2 as pb
from tests.procs import start_daemon, start_edge
from tests.smtpclient import send_message
from tests.test_relay import Upstream


def send(port: int, sender: bytes, recipients: list[bytes], body: bytes) -> bytes:
    return send_message(port, body, sender, tuple(recipients))


BODY = b"Subject: envelope\r\n\r\nbody\r\n"

REWRITE = r"""
kumo.on('smtp_server_data', function(msg)
  msg:set_sender(string.format('bounce-%s@%s', msg:sender().user, 'bounces.example'))
  local list = {}
  for _, r in ipairs(msg:recipient_list()) do
    list[#list + 1] = 'archive+' .. r.user .. '@' .. r.domain
  end
  msg:set_recipient(list)
  msg:set_meta('seen_sender', msg:sender().email)
end)
kumo.on('smtp_server_message_received', function(msg)
  if msg:recipient().user == 'archive+b' then msg:set_recipient(msg:sender()) end
  msg:prepend_header('X-Envelope', msg:sender().email .. ' ' .. msg:get_meta('seen_sender'))
end)
"""


def test_data_changes_the_transaction_and_message_received_one_message(stack_factory) -> None:
    stack = stack_factory(REWRITE)
    reply = send(stack.port, b"a@example.com", [b"b@example.com", b"c@example.net"], BODY)
    assert re.fullmatch(rb"250 OK ids=[0-9a-f]{32} [0-9a-f]{32}\r\n", reply)
    got = sorted((e.sender, e.recipients, e.message) for e in stack.stored_entries())
    header = b"X-Envelope: bounce-a@bounces.example bounce-a@bounces.example\r\n"
    assert got == [
        ("bounce-a@bounces.example", ["archive+c@example.net"], header + BODY),
        ("bounce-a@bounces.example", ["bounce-a@bounces.example"], header + BODY),
    ]


def test_the_null_sender_and_an_envelope_address_object_are_accepted(stack_factory) -> None:
    stack = stack_factory(r"""
kumo.on('smtp_server_message_received', function(msg)
  msg:set_recipient(msg:sender())
  msg:set_sender('')
end)
""")
    assert send(stack.port, b"a@example.com", [b"b@example.com"], BODY).startswith(b"250 ")
    ((sender, recipients),) = [(e.sender, e.recipients) for e in stack.stored_entries()]
    assert (sender, recipients) == ("", ["a@example.com"])


@pytest.mark.parametrize(
    ("call", "error"),
    [
        ("msg:set_sender('a@b>\\r\\nRCPT TO:<x@y')", 'msg:set_sender: "a@b>\\13\\'),
        ("msg:set_sender('no-domain')", "is not an envelope address (local@domain)"),
        ("msg:set_sender(42)", "expected an address (a string or an EnvelopeAddress), got number"),
        ("msg:set_recipient({})", "msg:set_recipient: the list of recipients is empty"),
        ("msg:set_recipient('')", 'msg:set_recipient: "" is not an envelope address'),
        ("msg:set_recipient({'a@b', 'c d@e'})", '"c d@e" is not an envelope address'),
    ],
)
def test_what_is_not_an_address_is_a_policy_error(stack_factory, call: str, error: str) -> None:
    stack = stack_factory(f"kumo.on('smtp_server_data', function(msg) {call} end)")
    assert send(stack.port, b"a@example.com", [b"b@example.com"], BODY) == (
        b"421 4.3.0 mx.test technical difficulties\r\n"
    )
    (logged,) = [e for e in stack.daemon.log_lines() if e.get("msg") == "policy error"]
    assert error in logged["error"]
    assert stack.stored_entries() == []


@pytest.mark.parametrize(
    "envelope",
    [
        pb.Envelope(sender="a@b>\r\nRCPT TO:<x@y"),
        pb.Envelope(recipients=pb.Recipients(addresses=["ok@example.com", "<x@y>"])),
        pb.Envelope(recipients=pb.Recipients()),
    ],
)
def test_the_edge_refuses_an_envelope_that_is_not_mailboxes(envelope: pb.Envelope) -> None:
    before = Envelope("s@example.com", ["r@example.com"])
    with pytest.raises(ValueError, match="the policy set an e"):
        changed(before, pb.Verdict(envelope=envelope))
    assert changed(before, pb.Verdict()) is before
    after = changed(before, pb.Verdict(envelope=pb.Envelope(sender="")))
    assert after == Envelope("", ["r@example.com"])


def test_a_relayed_message_goes_upstream_with_the_new_envelope(tmp_path) -> None:
    upstream = Upstream(tmp_path)
    (tmp_path / "policy.lua").write_text(r"""
kumo.on('smtp_server_message_received', function(msg)
  if msg:recipient().user == 'moved' then
    msg:set_sender('srs0=x@forwarder.example')
    msg:set_recipient { 'one@new.example', 'two@new.example' }
  end
end)
""")
    daemon, address = start_daemon(tmp_path / "policy.lua", tmp_path)
    edge, port = start_edge(address, tmp_path, "--relay", f"smtp://127.0.0.1:{upstream.port}")
    try:
        for recipient in (b"moved@example.com", b"kept@example.com"):
            assert send(port, b"a@example.com", [recipient], BODY).startswith(b"250 OK ids=")
        got = [(env["sender"], env["recipients"]) for _, env in upstream.messages()]
        assert got == [
            ("srs0=x@forwarder.example", ["one@new.example", "two@new.example"]),
            ("a@example.com", ["kept@example.com"]),
        ]
    finally:
        for proc in (edge, daemon, upstream.proc):
            proc.stop()
