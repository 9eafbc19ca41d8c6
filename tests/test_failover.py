"""The edge ↔ daemon link: deadlines, fail modes, failover, recovery."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from policy.addresses import Address, parse
from policy.v1 import policy_pb2 as pb
from smtpedge import endpoints, policy_client
from tests.mailstore import read_maildir
from tests.procs import free_port, start_daemon, start_edge
from tests.smtpclient import RawClient

# Handlers at every stage: nothing gets through without a verdict at each.
POLICY = r"""
kumo.on('smtp_server_connection_accepted', function(conn_meta) conn_meta:set_meta('x_seen', 1) end)
kumo.on('smtp_server_ehlo', function(domain, conn_meta) end)
kumo.on('smtp_server_mail_from', function(sender) end)
kumo.on('smtp_server_rcpt_to', function(rcpt) end)
kumo.on('smtp_server_data', function(msg, conn_meta)
  msg:prepend_header('X-Policy-Seen', 'data ' .. tostring(conn_meta:get_meta('x_seen')))
end)
"""
WELL_FORMED = re.compile(rb"^(\d{3}-[^\r\n]*\r\n)*\d{3} [^\r\n]*\r\n\Z")
UNAVAILABLE = re.compile(rb"^4(21|51) 4\.3\.0 mx\.test policy service unavailable, try again later")


@dataclass
class Session:
    number: int
    replies: list[bytes] = field(default_factory=list)
    accepted: bool = False
    error: str | None = None


def transaction(port: int, number: int) -> Session:
    """One whole SMTP transaction; stops at the first refusal."""
    session = Session(number)
    commands = [
        b"EHLO client.test",
        b"MAIL FROM:<a@example.com>",
        b"RCPT TO:<b@example.com>",
        b"DATA",
        b"Subject: message %d\r\n\r\nbody\r\n." % number,
        b"QUIT",
    ]
    try:
        with RawClient(port, timeout=10) as client:
            session.replies.append(client.reply())
            for command in commands:
                if session.replies[-1][:1] not in b"23":
                    break
                session.replies.append(client.command(command))
            session.accepted = len(session.replies) >= 6 and session.replies[5].startswith(b"250 ")
    except (OSError, ConnectionError, TimeoutError) as e:
        session.error = repr(e)
    return session


class Traffic:
    """Sessions in a background thread until stopped (bounded)."""

    def __init__(self, port: int, limit: int = 3000) -> None:
        self.port, self.limit = port, limit
        self.sessions: list[Session] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        for number in range(self.limit):
            if self._stop.is_set():
                return
            self.sessions.append(transaction(self.port, number))

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def stored_subjects(maildir: Path) -> dict[int, bytes]:
    out = {}
    for entry in read_maildir(maildir):
        match = re.search(rb"^Subject: message (\d+)\r\n", entry.message, re.M)
        assert match, entry.raw
        out[int(match.group(1))] = entry.message
    return out


def check_sessions(sessions: list[Session], maildir: Path) -> None:
    """Every session got well-formed replies; every 250 is stored, with the policy's mark."""
    stored = stored_subjects(maildir)
    for session in sessions:
        assert session.error is None, session
        assert all(WELL_FORMED.match(r) for r in session.replies), session
        if session.accepted:
            assert stored[session.number].startswith(b"X-Policy-Seen: data 1\r\n")
    accepted = {s.number for s in sessions if s.accepted}
    assert set(stored) == accepted


def wait_until_served(port: int, seconds: float, probes: list[Session]) -> float:
    """Seconds until a whole transaction succeeds; fails after `seconds`."""
    began = time.monotonic()
    while True:
        probes.append(transaction(port, 10**6 + len(probes)))
        if probes[-1].accepted:
            return time.monotonic() - began
        assert time.monotonic() - began < seconds, "the edge did not recover in time"
        time.sleep(0.01)


def test_daemon_killed_under_traffic_then_restarted(tmp_path: Path) -> None:
    policy = tmp_path / "policy.lua"
    policy.write_text(POLICY)
    port = free_port()
    daemon, address = start_daemon(policy, tmp_path, listen=f"127.0.0.1:{port}")
    edge, smtp_port = start_edge(address, tmp_path)
    try:
        with Traffic(smtp_port) as traffic:
            time.sleep(0.5)
            daemon.popen.kill()  # kill -9
            daemon.popen.wait()
            time.sleep(0.7)
            during_outage = len(traffic.sessions)
            daemon, _ = start_daemon(policy, tmp_path, listen=address, log="policyd-2.log")
            probes: list[Session] = []
            recovered = wait_until_served(smtp_port, 2.0, probes)
            time.sleep(0.3)
        sessions = traffic.sessions
        check_sessions(sessions + probes, tmp_path / "mail")
        refused = [s for s in sessions if not s.accepted]
        assert refused, "the outage was not seen"
        assert all(UNAVAILABLE.match(s.replies[-1]) for s in refused), refused[0]
        assert any(s.accepted for s in sessions[:during_outage])
        assert any(s.accepted for s in sessions[during_outage:])
        assert recovered < 2.0
    finally:
        edge.stop()
        daemon.stop()


def test_two_daemons_one_killed_sessions_keep_succeeding(tmp_path: Path) -> None:
    policy = tmp_path / "policy.lua"
    policy.write_text(POLICY)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    daemon_a, address_a = start_daemon(policy, tmp_path / "a")
    daemon_b, address_b = start_daemon(policy, tmp_path / "b")
    edge, port = start_edge(address_a, tmp_path, "--policy-server", address_b)
    try:
        with Traffic(port) as traffic:
            time.sleep(0.5)
            before = len(traffic.sessions)
            daemon_a.popen.kill()
            time.sleep(1.0)
        sessions = traffic.sessions
        assert before > 5 and len(sessions) > before + 5
        check_sessions(sessions, tmp_path / "mail")
        assert all(s.accepted for s in sessions), [s for s in sessions if not s.accepted][:1]
    finally:
        edge.stop()
        daemon_a.stop()
        daemon_b.stop()


def test_the_edge_starts_before_any_daemon_and_recovers(tmp_path: Path) -> None:
    policy = tmp_path / "policy.lua"
    policy.write_text(POLICY)
    port = free_port()
    edge, smtp_port = start_edge(f"127.0.0.1:{port}", tmp_path)
    daemon = None
    try:
        with RawClient(smtp_port) as client:  # no daemon: no banner, but the fail-mode reply
            assert UNAVAILABLE.match(client.rest_until_close())
        daemon, _ = start_daemon(policy, tmp_path, listen=f"127.0.0.1:{port}")
        probes: list[Session] = []
        assert wait_until_served(smtp_port, 2.0, probes) < 2.0
        check_sessions(probes, tmp_path / "mail")
    finally:
        edge.stop()
        if daemon:
            daemon.stop()


SLOW = """
kumo.on('smtp_server_mail_from', function(sender)
  if sender.user == 'slow' then kumo.sleep(1.5) end
end)
"""


def metric(port: int, name: str, labels: dict[str, str]) -> float:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


@pytest.mark.parametrize("fail_open", [False, True], ids=["fail-closed", "fail-open"])
def test_a_verdict_that_comes_too_late_is_never_a_continue(
    process_stack_factory, fail_open
) -> None:
    metrics_port = free_port()
    stack = process_stack_factory(
        SLOW,
        "--policy-timeout", "5",
        "--stage-timeout", "mail=0.3",
        "--metrics", f"127.0.0.1:{metrics_port}",
        *(["--fail-open", "mail"] if fail_open else []),
        daemon_args=("--eval-timeout", "3"),
    )  # fmt: skip
    with stack.greeted() as client:
        assert client.command(b"MAIL FROM:<fast@example.com>") == b"250 OK\r\n"
        client.command(b"RSET")
        began = time.monotonic()
        reply = client.command(b"MAIL FROM:<slow@example.com>")
        assert time.monotonic() - began < 1.5  # the edge's deadline, not the policy's sleep
        if not fail_open:
            assert reply == b"451 4.3.0 mx.test policy service unavailable, try again later\r\n"
            assert client.command(b"RCPT TO:<b@example.com>") == b"503 Error: need MAIL command\r\n"
        else:
            assert reply == b"250 OK\r\n"
            assert client.command(b"RCPT TO:<b@example.com>") == b"250 OK\r\n"
            client.command(b"DATA")
            client.send(b"Subject: accepted without a verdict\r\n\r\nbody\r\n.\r\n")
            assert client.reply().startswith(b"250 OK ids=")
    stage = {"stage": "mail"}
    opened = metric(metrics_port, "smtpedge_policy_fail_open_total", stage)
    closed = metric(metrics_port, "smtpedge_policy_unavailable_total", stage)
    assert (opened, closed) == ((1.0, 0.0) if fail_open else (0.0, 1.0))
    logged = [e for e in stack.edge.log_lines() if e.get("msg") == "no verdict: failing open"]
    assert len(logged) == (1 if fail_open else 0)
    assert len(stack.stored()) == (1 if fail_open else 0)


def test_a_policy_server_given_by_name(tmp_path: Path) -> None:
    policy = tmp_path / "policy.lua"
    policy.write_text(POLICY)
    daemon, address = start_daemon(policy, tmp_path)
    port = address.rsplit(":", 1)[1]
    edge, smtp_port = start_edge(f"localhost:{port}", tmp_path)
    try:
        probes: list[Session] = []
        wait_until_served(smtp_port, 5.0, probes)
        check_sessions(probes, tmp_path / "mail")
    finally:
        edge.stop()
        daemon.stop()


def test_a_name_is_balanced_over_every_address_it_resolves_to(tmp_path: Path, monkeypatch) -> None:
    """Replicas behind one name each get streams, and the set follows the name
    as replicas come and go. DNS answers are the test's (nothing else can give
    one name several loopback addresses here); the daemons and the client are real."""
    daemons, addresses = [], []
    for name in ("one", "two"):
        workdir = tmp_path / name
        workdir.mkdir()
        policy = workdir / "policy.lua"
        policy.write_text(
            f"kumo.on('smtp_server_mail_from', function() kumo.reject(550, '{name}') end)"
        )
        daemon, address = start_daemon(policy, workdir)
        daemons.append(daemon)
        addresses.append(address)
    answer: set[Address] = {parse(addresses[0])}

    async def resolve(endpoint: Address, timeout: float = 2.0) -> set[Address]:
        assert endpoint == Address("policyd.test", 50051)
        return set(answer)

    monkeypatch.setattr(endpoints, "resolve", resolve)

    async def deciders(client: policy_client.PolicyClient, count: int = 40) -> set[str]:
        def request() -> pb.EvaluateRequest:
            return pb.EvaluateRequest(
                event="smtp_server_mail_from",
                client=pb.Client(edge_id="e", hostname="mx.test"),
                session=pb.Session(id="s", peer_ip="192.0.2.1", peer_port=1),
                mail_from=pb.MailFromArgs(sender="a@example.com"),
            )

        verdicts = [await client.evaluate(request(), 1.0) for _ in range(count)]
        return {v.text for v in verdicts if v is not None}

    async def until(client: policy_client.PolicyClient, expected: set[str]) -> None:
        async with asyncio.timeout(10):
            while await deciders(client) != expected:
                await asyncio.sleep(0.05)

    async def scenario() -> None:
        client = policy_client.PolicyClient([parse("policyd.test:50051")], 2, resolve_every=0.05)
        try:
            await until(client, {"one"})
            answer.add(parse(addresses[1]))  # a replica comes
            await until(client, {"one", "two"})
            assert len(client.connections) == 4  # two streams per replica
            answer.discard(parse(addresses[0]))  # one goes
            await until(client, {"two"})
            assert [str(c.endpoint) for c in client.connections] == [addresses[1]] * 2
        finally:
            await client.close()

    try:
        asyncio.run(scenario())
    finally:
        for daemon in daemons:
            daemon.stop()
