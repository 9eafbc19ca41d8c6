"""The data phase as KumoMTA runs it: smtp_server_data once for the transaction,
smtp_server_split_transaction (or the listener's batch_handling) to group the
recipients, then one message per batch, each with its own id, Received header,
header changes and message meta, seen by smtp_server_message_received; any
refusal refuses the whole DATA. Real daemon and edge, real SMTP, the Maildir."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.smtpclient import RawClient

MESSAGE_RECEIVED = r"""
kumo.on('smtp_server_data', function(msg)
  msg:set_meta('x_transaction', msg:id() .. ' for ' .. #msg:recipient_list())
end)
kumo.on('smtp_server_message_received', function(msg)
  local names = {}
  for i, address in ipairs(msg:recipient_list()) do names[i] = address.email end
  msg:prepend_header('X-Batch', msg:id() .. ' ' .. table.concat(names, ','))
  msg:prepend_header('X-Transaction', msg:get_meta('x_transaction'))
  -- meta set for one message is not seen by the next
  msg:prepend_header('X-Before', tostring(msg:get_meta('x_mine')))
  msg:set_meta('x_mine', names[1])
  if msg:recipient_list()[1].user == 'refuse' then kumo.reject(550, '5.7.1 not for them') end
end)
"""

BY_DOMAIN = r"""
kumo.on('smtp_server_split_transaction', function(message, conn_meta)
  local by_domain = {}
  for _, recip in ipairs(message:recipient_list()) do
    local domain = recip.domain:lower()
    if not by_domain[domain] then by_domain[domain] = {} end
    table.insert(by_domain[domain], recip)
  end
  return by_domain
end)
"""

BODY = b"Subject: batches\r\n\r\nbody\r\n"


def send(port: int, recipients: list[str], body: bytes = BODY) -> bytes:
    """One transaction; the reply to the message."""
    with RawClient(port) as client:
        client.reply()
        client.command(b"EHLO client.test")
        assert client.command(b"MAIL FROM:<s@example.com>") == b"250 OK\r\n"
        for recipient in recipients:
            assert client.command(f"RCPT TO:<{recipient}>".encode()) == b"250 OK\r\n"
        assert client.command(b"DATA").startswith(b"354")
        client.send(body + b".\r\n")
        return client.reply()


def reply_ids(reply: bytes) -> list[str]:
    match = re.fullmatch(rb"250 OK ids=([0-9a-f]+(?: [0-9a-f]+)*)\r\n", reply)
    assert match, reply
    return match.group(1).decode().split()


def test_each_recipient_gets_a_message_of_its_own(stack_factory) -> None:
    stack = stack_factory(MESSAGE_RECEIVED)
    recipients = ["a@one.example", "b@two.example", "c@one.example"]
    ids = reply_ids(send(stack.port, recipients))
    assert len(set(ids)) == 3
    by_id = {}
    for entry in stack.stored_entries():
        (message_id,) = re.findall(rb" id ([0-9a-f]+)", entry.received)
        by_id[message_id.decode()] = entry
    assert set(by_id) == set(ids)
    for message_id, recipient in zip(ids, recipients, strict=True):
        entry = by_id[message_id]
        assert entry.recipients == [recipient]
        assert f"for <{recipient}>;".encode() in entry.received
        # the handler's prepends sit above the Received header it saw
        assert entry.raw.index(b"X-Batch:") < entry.raw.index(b"Received:")
        assert entry.message == (
            f"X-Before: nil\r\nX-Transaction: {ids[0]} for 3\r\n"
            f"X-Batch: {message_id} {recipient}\r\n".encode()
            + BODY
        )


def test_a_refusal_of_one_message_refuses_the_whole_transaction(stack_factory) -> None:
    stack = stack_factory(MESSAGE_RECEIVED)
    reply = send(stack.port, ["a@one.example", "refuse@two.example", "c@one.example"])
    assert reply == b"550 5.7.1 not for them\r\n"
    assert stack.stored_entries() == []
    # the session goes on, and the next transaction is stored
    assert len(reply_ids(send(stack.port, ["a@one.example"]))) == 1
    assert len(stack.stored_entries()) == 1


def test_split_transaction_groups_recipients_as_the_handler_says(stack_factory) -> None:
    stack = stack_factory(BY_DOMAIN + MESSAGE_RECEIVED)
    ids = reply_ids(send(stack.port, ["a@one.example", "b@two.example", "c@ONE.example"]))
    assert len(ids) == 2
    got = sorted(entry.recipients for entry in stack.stored_entries())
    assert got == [["a@one.example", "c@ONE.example"], ["b@two.example"]]
    (both,) = [e for e in stack.stored_entries() if len(e.recipients) == 2]
    assert b"X-Batch: " in both.message and b"a@one.example,c@ONE.example\r\n" in both.message
    assert b"for <" not in both.received  # several recipients: none named


@pytest.mark.parametrize(
    ("returned", "reply"),
    [
        ("{}", b"550 5.7.1 relaying not permitted\r\n"),
        ("{ {} }", b"550 5.7.1 relaying not permitted\r\n"),
        ("'everyone'", b"421 4.3.0 mx.test technical difficulties\r\n"),
        ("{ 'a@one.example' }", b"421 4.3.0 mx.test technical difficulties\r\n"),
    ],
)
def test_a_split_into_nothing_or_into_nonsense_is_refused(stack_factory, returned, reply) -> None:
    stack = stack_factory(
        f"kumo.on('smtp_server_split_transaction', function() return {returned} end)"
    )
    assert send(stack.port, ["a@one.example", "b@two.example"]) == reply
    assert stack.stored_entries() == []


def test_a_split_may_name_addresses_as_text(stack_factory) -> None:
    stack = stack_factory(
        "kumo.on('smtp_server_split_transaction', function(msg)\n"
        "  return { { 'b@two.example' }, { msg:recipient_list()[1] } }\n"
        "end)"
    )
    ids = reply_ids(send(stack.port, ["a@one.example", "b@two.example"]))
    assert len(ids) == 2
    assert sorted(e.recipients for e in stack.stored_entries()) == [
        ["a@one.example"],
        ["b@two.example"],
    ]


def test_the_listener_batch_handling_applies_unless_the_edge_says(stack_factory) -> None:
    policy = "kumo.start_esmtp_listener { listen = '0.0.0.0:25', batch_handling = 'BatchByDomain' }"
    stack = stack_factory(policy)
    # the edge learns the policy's listener when its stream to the daemon is up
    stack.edge.wait_for_log(lambda e: e.get("msg") == "policy stream up")
    assert len(reply_ids(send(stack.port, ["a@one.example", "b@one.example"]))) == 1
    edge_says = stack_factory(policy, "--batch-handling", "BifurcateAlways")
    assert len(reply_ids(send(edge_says.port, ["a@one.example", "b@one.example"]))) == 2


CASES = """
[[case]]
name = "one refused recipient refuses the message"
steps = [
  { mail_from = "s@example.com" },
  { rcpt_to = "a@one.example" },
  { rcpt_to = "refuse@two.example" },
  { data = "Subject: x\\r\\n\\r\\nbody\\r\\n", expect = "reject 550 5.7.1 not for them" },
]

[[case]]
name = "every recipient fine"
steps = [
  { mail_from = "s@example.com" },
  { rcpt_to = "a@one.example" },
  { rcpt_to = "b@two.example" },
  { data = "Subject: x\\r\\n\\r\\nbody\\r\\n" },
]
"""


def test_policy_test_cases_run_the_data_phase_as_the_edge_does(tmp_path: Path) -> None:
    (tmp_path / "policy.lua").write_text(MESSAGE_RECEIVED)
    (tmp_path / "policy.tests.toml").write_text(CASES)
    result = subprocess.run(
        [sys.executable, "-m", "policyd.ctl", "test", str(tmp_path / "policy.lua")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed, 0 failed" in result.stdout
    # the message_received handler ran (for each batch), line by line
    assert "smtp_server_message_received: 8/8 lines run" in result.stdout
