"""A KumoMTA policy's kumo.start_esmtp_listener shapes the edge's sessions
(hostname, banner, sizes and counts, the Received header, batch handling)
wherever the edge's own flags were left at their defaults; a flag given on the
command line or in the environment wins."""

from __future__ import annotations

from policy.v1 import policy_pb2 as pb
from smtpedge.config import EdgeConfig
from smtpedge.listener_params import params
from tests.smtpclient import RawClient

LISTENER = pb.Listener(
    listen="0.0.0.0:25",
    hostname="mx.policy.example",
    banner="welcome to the policy",
    max_message_size=2000,
    max_recipients_per_message=2,
    max_messages_per_connection=3,
    received_header=False,
    batch_handling=pb.BATCH_HANDLING_BATCH_BY_DOMAIN,
)


def test_the_policy_listener_fills_what_the_edge_left_at_its_defaults() -> None:
    shaped, from_policy = params(EdgeConfig(hostname="mx.edge.example"), LISTENER)
    assert (shaped.hostname, shaped.banner) == ("mx.policy.example", "welcome to the policy")
    assert (shaped.max_message_size, shaped.max_recipients) == (2000, 2)
    assert shaped.max_messages_per_connection == 3
    assert (shaped.received_header, shaped.batch_handling) == (False, LISTENER.batch_handling)
    assert len(from_policy) == 7


def test_flags_the_edge_was_given_win_and_unset_listener_fields_leave_the_edge_s() -> None:
    config = EdgeConfig(
        hostname="mx.edge.example",
        max_recipients=50,
        explicit=frozenset({"hostname", "max_recipients"}),
    )
    shaped, from_policy = params(config, LISTENER)
    assert (shaped.hostname, shaped.max_recipients) == ("mx.edge.example", 50)
    assert "hostname" not in from_policy and "max_recipients" not in from_policy
    bare, from_bare = params(config, pb.Listener(listen="0.0.0.0:25"))
    assert bare.banner == "ESMTP smtpedge" and bare.max_message_size == 10 * 1024 * 1024
    assert from_bare == []
    assert params(config, None)[1] == []


POLICY = """
kumo.start_esmtp_listener {
  listen = '0.0.0.0:25',
  banner = 'welcome to the policy',
  max_message_size = 2000,
  max_recipients_per_message = 2,
  max_messages_per_connection = 3,
  trace_headers = { received_header = false },
}
"""


def greet(client: RawClient) -> tuple[bytes, bytes]:
    return client.reply(), client.command(b"EHLO client.test")


def wait_for_policy(stack) -> None:
    """The edge learns the listener when its stream to the daemon is up."""
    stack.edge.wait_for_log(lambda e: e.get("msg") == "policy stream up")


def test_the_edge_greets_and_limits_as_the_policy_listener_says(stack_factory) -> None:
    stack = stack_factory(POLICY)
    wait_for_policy(stack)
    with stack.client() as client:
        banner, ehlo = greet(client)
        assert banner == b"220 mx.test welcome to the policy\r\n"  # --hostname was given
        assert b"250-SIZE 2000\r\n" in ehlo
        assert client.command(b"MAIL FROM:<a@example.com> SIZE=3000") == (
            b"552 5.3.4 Error: message size exceeds fixed maximum message size\r\n"
        )
        assert client.command(b"MAIL FROM:<a@example.com>") == b"250 OK\r\n"
        assert client.command(b"RCPT TO:<r1@example.com>") == b"250 OK\r\n"
        assert client.command(b"RCPT TO:<r2@example.com>") == b"250 OK\r\n"
        assert client.command(b"RCPT TO:<r3@example.com>") == (
            b"452 4.5.3 Error: too many recipients\r\n"
        )
        assert client.command(b"DATA").startswith(b"354")
        assert client.command(b"Subject: x\r\n\r\nbody\r\n.").startswith(b"250 OK ids=")
        # the third recipient of the connection is one too many (KumoMTA counts
        # recipients); with none in the transaction yet, the session ends
        assert client.command(b"MAIL FROM:<a@example.com>") == b"250 OK\r\n"
        assert client.command(b"RCPT TO:<r3@example.com>") == b"250 OK\r\n"
        assert client.command(b"RCPT TO:<r4@example.com>") == (
            b"452 4.5.3 too many recipients on this connection\r\n"
        )
        client.command(b"RSET")
        assert client.command(b"MAIL FROM:<a@example.com>") == b"250 OK\r\n"
        client.send(b"RCPT TO:<r5@example.com>\r\n")
        assert client.rest_until_close() == (
            b"421 4.5.3 mx.test too many recipients on this connection\r\n"
        )
    entries = stack.stored_entries()
    assert len(entries) == 2 and all(e.received == b"" for e in entries)
    (shaped,) = [
        e for e in stack.edge.log_lines() if e.get("msg") == "listener shaped by the policy"
    ]
    assert shaped["banner"] == "welcome to the policy" and "hostname" not in shaped["from_policy"]


def test_a_flag_given_to_the_edge_wins_over_the_listener(stack_factory) -> None:
    stack = stack_factory(POLICY, "--max-message-size", "5000")
    wait_for_policy(stack)
    with stack.client() as client:
        banner, ehlo = greet(client)
    assert banner == b"220 mx.test welcome to the policy\r\n"
    assert b"250-SIZE 5000\r\n" in ehlo
