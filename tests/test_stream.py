"""The Stream call: batches, request ids, policy info; the edge skipping unhandled events."""

from __future__ import annotations

import queue
import threading
import time
import urllib.request

import grpc
from prometheus_client.parser import text_string_to_metric_families

from policy.v1 import policy_pb2 as pb
from policy.v1 import policy_pb2_grpc as pb_grpc
from tests.procs import free_port, start_daemon, start_edge
from tests.smtpclient import RawClient

ECHO = """
kumo.on('smtp_server_mail_from', function(sender)
  kumo.reject(550, 'seen ' .. sender.user)
end)
"""


def mail_from(sender: str, request_id: int = 0) -> pb.EvaluateRequest:
    return pb.EvaluateRequest(
        request_id=request_id,
        event="smtp_server_mail_from",
        mail_from=pb.MailFromArgs(sender=sender),
    )


class StreamClient:
    """A raw Stream call: batches go in through a queue, replies are collected."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.outgoing: queue.Queue[pb.RequestBatch | None] = queue.Queue()
        self.replies = pb_grpc.PolicyServiceStub(self.channel).Stream(iter(self.outgoing.get, None))

    def send(self, *requests: pb.EvaluateRequest) -> None:
        self.outgoing.put(pb.RequestBatch(requests=requests))

    def close(self) -> None:
        self.outgoing.put(None)
        self.channel.close()


def test_stream_batches_request_ids_and_policy_info(tmp_path) -> None:
    policy = tmp_path / "policy.lua"
    policy.write_text(ECHO)
    daemon, address = start_daemon(policy, tmp_path, "--watch", "off")
    client = StreamClient(address)
    try:
        first = next(client.replies)
        assert first.policy.handled_events == ["smtp_server_mail_from"]
        revision = first.policy.revision
        assert len(revision) == 12

        client.send(*(mail_from(f"user{n}@example.com", 1000 + n) for n in range(50)))
        client.send(pb.EvaluateRequest(request_id=7, event="smtp_server_nope"))
        verdicts: dict[int, pb.Verdict] = {}
        errors: dict[int, str] = {}
        while len(verdicts) < 50 or not errors:
            batch = next(client.replies)
            verdicts.update((v.request_id, v) for v in batch.verdicts)
            errors.update((e.request_id, e.message) for e in batch.errors)
        assert sorted(verdicts) == list(range(1000, 1050))
        assert all(v.text == f"seen user{n - 1000}" for n, v in verdicts.items())
        assert all(v.revision == revision for v in verdicts.values())
        assert "unknown event 'smtp_server_nope'" in errors[7]

        # A new revision is announced on the open stream.
        policy.write_text(ECHO + "kumo.on('smtp_server_rcpt_to', function() end)\n")
        admin = pb_grpc.PolicyAdminStub(client.channel)
        assert admin.Reload(pb.ReloadRequest(), timeout=10).outcome == (
            pb.ReloadResponse.OUTCOME_ACTIVATED
        )
        update = next(client.replies)
        assert update.policy.handled_events == ["smtp_server_mail_from", "smtp_server_rcpt_to"]
        assert update.policy.revision != revision
    finally:
        client.close()
        daemon.stop()


def evaluations(metrics_port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name == "policyd_evaluations_total":
                event = sample.labels["event"]
                out[event] = out.get(event, 0) + sample.value
    return out


def test_the_edge_asks_only_about_events_the_policy_handles(tmp_path) -> None:
    policy = tmp_path / "policy.lua"
    policy.write_text("kumo.on('smtp_server_mail_from', function() end)\n")
    metrics_port = free_port()
    daemon, address = start_daemon(
        policy, tmp_path, "--watch", "off", "--metrics", f"127.0.0.1:{metrics_port}"
    )
    edge, port = start_edge(address, tmp_path)
    try:
        deadline = time.monotonic() + 5
        while not [e for e in edge.log_lines() if e.get("msg") == "policy stream up"]:
            assert time.monotonic() < deadline, "the edge's streams never came up"
            time.sleep(0.02)
        with RawClient(port) as client:
            client.reply()
            client.command(b"EHLO client.test")
            client.command(b"MAIL FROM:<a@example.com>")
            client.command(b"RCPT TO:<b@example.com>")
            client.command(b"DATA")
            client.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
            assert client.reply().startswith(b"250 OK ids=")
        assert evaluations(metrics_port) == {"smtp_server_mail_from": 1.0}
    finally:
        edge.stop()
        daemon.stop()


def test_a_new_handler_is_used_after_a_hot_swap(tmp_path) -> None:
    policy = tmp_path / "policy.lua"
    policy.write_text("kumo.on('smtp_server_mail_from', function() end)\n")
    daemon, address = start_daemon(policy, tmp_path)
    edge, port = start_edge(address, tmp_path)
    try:
        with RawClient(port) as client:
            client.reply()
            client.command(b"EHLO client.test")
            client.command(b"MAIL FROM:<a@example.com>")
            assert client.command(b"RCPT TO:<b@example.com>") == b"250 OK\r\n"
            tmp = policy.with_suffix(".tmp")
            tmp.write_text(
                "kumo.on('smtp_server_mail_from', function() end)\n"
                "kumo.on('smtp_server_rcpt_to', function() kumo.reject(550, 'now refused') end)\n"
            )
            tmp.rename(policy)
            changed = time.monotonic()
            while client.command(b"RCPT TO:<c@example.com>") != b"550 now refused\r\n":
                assert time.monotonic() - changed < 2.0
                time.sleep(0.02)
    finally:
        edge.stop()
        daemon.stop()


def test_many_sessions_share_the_streams(stack_factory) -> None:
    stack = stack_factory(ECHO)
    results: list[bytes] = []

    def session(n: int) -> None:
        with stack.greeted() as client:
            results.append(client.command(b"MAIL FROM:<u%d@example.com>" % n))

    threads = [threading.Thread(target=session, args=(n,)) for n in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == sorted(b"550 seen u%d\r\n" % n for n in range(40))


def test_a_stopping_daemon_ends_its_streams_without_waiting_out_the_grace(
    process_stack_factory,
) -> None:
    stack = process_stack_factory(ECHO, daemon_args=("--shutdown-grace", "30"))
    deadline = time.monotonic() + 5
    while not [e for e in stack.edge.log_lines() if e.get("msg") == "policy stream up"]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    began = time.monotonic()
    assert stack.daemon.stop(timeout=30) == 0
    assert time.monotonic() - began < 5  # not the 30 s grace: the streams were ended
