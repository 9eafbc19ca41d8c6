"""Maildir mode: one durable file per message (per recipient by default, as KumoMTA
splits a transaction), its envelope, its trace header."""

from __future__ import annotations

import email
import email.policy
import random
import re
import threading
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import pytest

from tests.mailstore import parse_stored, read_maildir
from tests.procs import start_daemon, start_edge
from tests.smtpclient import RawClient

POLICY = r"""
kumo.on('smtp_server_rcpt_to', function(rcpt)
  if rcpt.user == 'refused' then kumo.reject(550, '5.1.1 refused by policy') end
end)
"""


def send(port: int, helo: bytes, recipients: list[bytes], body: bytes) -> bytes:
    with RawClient(port) as client:
        client.reply()
        client.command(helo)
        client.command(b"MAIL FROM:<sender@example.com>")
        for rcpt in recipients:
            client.command(b"RCPT TO:<" + rcpt + b">")
        client.command(b"DATA")
        client.send(body + b".\r\n")
        return client.reply()


@pytest.mark.policy(POLICY)
def test_one_file_per_accepted_recipient_each_with_its_id(stack) -> None:
    reply = send(
        stack.port,
        b"EHLO client.test",
        [b"one@example.com", b"refused@example.com", b"two@example.net", b"three@example.org"],
        b"Subject: many\r\n\r\nbody\r\n",
    )
    assert re.fullmatch(rb"250 OK ids=(\w+) (\w+) (\w+)\r\n", reply), reply
    ids = reply[len(b"250 OK ids=") :].split()
    assert len(set(ids)) == 3
    names = {p.name: p for p in (stack.maildir / "new").iterdir()}
    assert len(names) == 3
    for message_id, recipient in zip(ids, ["one@example.com", "two@example.net",
                                           "three@example.org"], strict=True):  # fmt: skip
        (name,) = [n for n in names if f"_{message_id.decode()}." in n]
        entry = parse_stored(names[name].read_bytes())
        assert entry.sender == "sender@example.com" and entry.recipients == [recipient]
        assert entry.raw.startswith(
            b"Return-Path: <sender@example.com>\r\nX-Envelope-To: <%s>\r\nReceived: "
            % recipient.encode()
        )
        assert b"id %s\r\n\tfor <%s>;" % (message_id, recipient.encode()) in entry.received
        assert entry.message == b"Subject: many\r\n\r\nbody\r\n"
        assert b"refused@example.com" not in entry.raw


@pytest.mark.policy(
    POLICY + "kumo.start_esmtp_listener { listen = '0.0.0.0:25', batch_handling = 'BatchByDomain' }"
)
def test_batch_by_domain_makes_one_file_per_recipient_domain(stack) -> None:
    stack.edge.wait_for_log(lambda e: e.get("msg") == "policy stream up")  # knows the listener
    recipients = [b"a@one.example", b"b@two.example", b"c@ONE.example"]
    reply = send(stack.port, b"EHLO client.test", recipients, b"Subject: d\r\n\r\nbody\r\n")
    assert re.fullmatch(rb"250 OK ids=\w+ \w+\r\n", reply), reply
    entries = sorted(stack.stored_entries(), key=lambda entry: entry.recipients)
    assert [e.recipients for e in entries] == [
        ["a@one.example", "c@ONE.example"],
        ["b@two.example"],
    ]
    # a message for several recipients names none of them in its trace header
    assert b"for <" not in entries[0].received and b"for <b@two.example>" in entries[1].received


def parsed_received(entry) -> tuple[str, datetime]:
    message = email.message_from_bytes(entry.received + entry.message, policy=email.policy.default)
    value = " ".join(str(message["Received"]).split())
    return value, parsedate_to_datetime(value.rsplit(";", 1)[1].strip())


@pytest.mark.policy(POLICY)
@pytest.mark.parametrize(
    ("greeting", "recipients", "protocol", "for_clause"),
    [
        (b"EHLO client.test", [b"one@example.com"], "ESMTP", " for <one@example.com>"),
        (b"HELO client.test", [b"one@example.com"], "SMTP", " for <one@example.com>"),
    ],
)
def test_the_received_header(stack, greeting, recipients, protocol, for_clause) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    reply = send(stack.port, greeting, recipients, b"Subject: trace\r\n\r\nbody\r\n")
    message_id = reply.split(b"ids=")[1].strip().decode()
    (entry,) = stack.stored_entries()
    value, when = parsed_received(entry)
    assert value.startswith(
        f"from client.test ([127.0.0.1]) by mx.test (smtpedge) with {protocol} id {message_id}"
        f"{for_clause};"
    )
    assert before <= when <= datetime.now(UTC)


def test_the_received_header_can_be_switched_off(stack_factory) -> None:
    stack = stack_factory(POLICY, "--no-received-header")
    send(stack.port, b"EHLO client.test", [b"one@example.com"], b"Subject: x\r\n\r\nbody\r\n")
    (entry,) = stack.stored_entries()
    assert entry.received == b""
    assert entry.message == b"Subject: x\r\n\r\nbody\r\n"


def test_kill_9_at_random_moments_loses_nothing_acknowledged(tmp_path) -> None:
    policy = tmp_path / "policy.lua"
    policy.write_text("kumo.on('smtp_server_mail_from', function() end)\n")
    daemon, address = start_daemon(policy, tmp_path)
    rng = random.Random(20261127)
    sent: dict[str, bytes] = {}  # subject -> body, every message we started to send
    acknowledged: set[str] = set()
    kills = 0
    try:
        for round_ in range(22):
            edge, port = start_edge(address, tmp_path)
            stop = threading.Event()

            def traffic(round_: int = round_, port: int = port, stop=stop) -> None:
                for n in range(10_000):
                    if stop.is_set():
                        return
                    subject = f"r{round_}-m{n}"
                    body = f"Subject: {subject}\r\n\r\n".encode() + (
                        b"%07d line of body text\r\n" % n
                    ) * rng.randint(1, 8000)
                    sent[subject] = body
                    try:
                        reply = send(port, b"EHLO client.test", [b"r@example.com"], body)
                    except (OSError, ConnectionError, TimeoutError):
                        return
                    if reply.startswith(b"250 OK ids="):
                        acknowledged.add(subject)

            thread = threading.Thread(target=traffic)
            thread.start()
            time.sleep(rng.uniform(0.3, 0.9))
            edge.popen.kill()  # kill -9, no chance to clean up
            edge.popen.wait()
            kills += 1
            stop.set()
            thread.join(30)
    finally:
        daemon.stop()
    assert kills >= 20
    assert len(acknowledged) > 20
    stored = {}
    for path in (tmp_path / "mail" / "new").iterdir():
        entry = parse_stored(path.read_bytes())  # complete: the shape parses...
        match = re.search(rb"^Subject: (\S+)\r\n", entry.message, re.M)
        assert match is not None
        subject = match.group(1).decode()
        assert entry.message == sent[subject]  # ...and every byte is there
        stored[subject] = entry
    assert acknowledged <= set(stored), acknowledged - set(stored)
    assert len(read_maildir(tmp_path / "mail")) == len(stored)


def test_the_message_id_is_in_the_reply_the_logs_and_the_decision_log(
    process_stack_factory,
) -> None:
    stack = process_stack_factory(
        POLICY + "kumo.on('smtp_server_data', function(msg) msg:append_header('X-Seen', 'yes') end)"
    )
    reply = send(
        stack.port, b"EHLO client.test", [b"one@example.com"], b"Subject: ids\r\n\r\nb\r\n"
    )
    message_id = reply.split(b"ids=")[1].strip().decode()
    (accepted,) = [e for e in stack.edge.log_lines() if e.get("msg") == "accepted"]
    assert accepted["message_id"] == message_id
    assert message_id in accepted["file"]
    deadline = time.monotonic() + 5
    while True:  # the decision log is flushed within a fraction of a second
        decisions = [e for e in stack.daemon.log_lines() if e.get("event") == "smtp_server_data"]
        if decisions or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    (decision,) = decisions
    assert decision["message_id"] == message_id
    assert decision["recipients"] == ["one@example.com"]
    assert decision["action"] == "continue" and decision["decision_id"]
    assert b"Subject: ids" not in b"".join(
        line.encode()
        for line in stack.daemon.log_path.read_text().splitlines()
        if "decision_id" in line
    )  # never message bodies
