"""Many edges, one policy: throttles shared through Redis, edge identity in conn_meta."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Servers
from tests.procs import Proc, start_daemon
from tests.redis_server import RedisServer
from tests.smtpclient import RawClient

THROTTLED = r"""
kumo.on('smtp_server_mail_from', function(sender)
  if sender.domain ~= 'throttled.example' then return end
  local r = kumo.make_throttle('sender-' .. tostring(sender), '%s'):throttle()
  if r.throttled then
    kumo.reject(451, '4.7.1 ' .. tostring(sender) .. ' is sending too fast')
  end
end)
"""


class Cluster:
    """Daemons and edges sharing one Redis; started per test, stopped at the end.
    They run in the test's process, but a daemon given --metrics is a process."""

    def __init__(self, workdir: Path, servers: Servers) -> None:
        self.workdir = workdir
        self.servers = servers
        self.redis = RedisServer(workdir / "redis")
        self.procs: list[Proc] = []
        self.daemons: list[str] = []
        self.edges: list[int] = []

    def daemon(self, policy: str, *args: str) -> str:
        path = self.workdir / f"d{len(self.daemons)}"
        path.mkdir()
        (path / "policy.lua").write_text(policy)
        flags = ("--redis", self.redis.url, *args)
        if "--metrics" in args:
            proc, address = start_daemon(path / "policy.lua", path, *flags)
            self.procs.append(proc)
        else:
            _, address = self.servers.daemon(path / "policy.lua", path, *flags)
        self.daemons.append(address)
        return address

    def edge(self, *servers: str, args: tuple[str, ...] = ()) -> int:
        path = self.workdir / f"e{len(self.edges)}"
        path.mkdir()
        extra = [a for s in servers[1:] for a in ("--policy-server", s)]
        _, port = self.servers.edge(servers[0], path, *extra, *args)
        self.edges.append(port)
        return port

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.redis.stop()


@pytest.fixture
def cluster(tmp_path, servers):
    c = Cluster(tmp_path, servers)
    yield c
    c.close()


def mail_from(port: int, sender: str, count: int) -> list[bytes]:
    """`count` MAIL FROMs on one session (RSET between); the replies."""
    replies = []
    with RawClient(port) as client:
        client.reply()
        client.command(b"EHLO client.test")
        for _ in range(count):
            replies.append(client.command(b"MAIL FROM:<" + sender.encode() + b">"))
            client.command(b"RSET")
    return replies


def test_one_limit_across_two_daemons_and_three_edges(cluster) -> None:
    a = cluster.daemon(THROTTLED % "10/min")
    b = cluster.daemon(THROTTLED % "10/min")
    edges = [cluster.edge(a), cluster.edge(b), cluster.edge(a, b)]
    replies: dict[str, list[bytes]] = {
        sender: [] for sender in ("x@throttled.example", "y@throttled.example")
    }
    for _ in range(3):  # interleave edges and senders
        for port in edges:
            for sender in replies:
                replies[sender] += mail_from(port, sender, 3)
    for sender, got in replies.items():
        assert len(got) == 27
        assert got.count(b"250 OK\r\n") == 10, sender
        refused = [r for r in got if r != b"250 OK\r\n"]
        assert set(refused) == {f"451 4.7.1 {sender} is sending too fast\r\n".encode()}
    # Senders the policy does not throttle are not affected.
    assert mail_from(edges[2], "z@other.example", 15) == [b"250 OK\r\n"] * 15
    # KumoMTA's key, so KumoMTA nodes can share the limit.
    assert cluster.redis.client.exists("lua-user-throttle-sender-x@throttled.example:10:10:60")


def test_local_specs_count_per_daemon_process(cluster) -> None:
    a = cluster.daemon(THROTTLED % "local:10/min")
    b = cluster.daemon(THROTTLED % "local:10/min")
    to_a, to_b = cluster.edge(a), cluster.edge(b)
    got = mail_from(to_a, "x@throttled.example", 12) + mail_from(to_b, "x@throttled.example", 12)
    assert got.count(b"250 OK\r\n") == 20  # ten in each process
    assert cluster.redis.client.keys("*") == []


SLOW = r"""
local t = kumo.make_throttle('slow', '1000/min')
kumo.on('smtp_server_mail_from', function(sender)
  if sender.user == 'throttled' then
    local r = t:throttle()
    kumo.reject(550, 'throttle answered, remaining ' .. r.remaining)
  end
  kumo.reject(550, 'no throttle')
end)
"""


def test_a_redis_call_suspends_only_its_own_evaluation(cluster) -> None:
    daemon = cluster.daemon(SLOW, "--redis-timeout", "5", "--eval-timeout", "5")
    port = cluster.edge(daemon, args=("--policy-timeout", "8"))
    assert mail_from(port, "warm@x.example", 1) == [b"550 no throttle\r\n"]
    cluster.redis.client.execute_command("CLIENT", "PAUSE", "1500", "ALL")
    slow: dict[str, Any] = {}

    def throttled() -> None:
        slow["reply"] = mail_from(port, "throttled@x.example", 1)[0]
        slow["at"] = time.monotonic()

    thread = threading.Thread(target=throttled)
    thread.start()
    time.sleep(0.2)
    others = [(mail_from(port, f"u{n}@x.example", 1)[0], time.monotonic()) for n in range(5)]
    thread.join(10)
    assert all(reply == b"550 no throttle\r\n" for reply, _ in others)
    assert all(at < slow["at"] for _, at in others)  # served while the throttle waited
    assert slow["reply"] == b"550 throttle answered, remaining 999\r\n"


def metric(port: int, name: str, labels: dict[str, str]) -> float:
    from tests.test_failover import metric as read

    return read(port, name, labels)


@pytest.mark.parametrize("on_failure", ["error", "allow"])
def test_redis_killed_then_back(cluster, on_failure) -> None:
    from tests.procs import free_port

    metrics_port = free_port()
    daemon = cluster.daemon(
        THROTTLED % "3/min", "--redis-failure", on_failure, "--metrics", f"127.0.0.1:{metrics_port}"
    )
    port = cluster.edge(daemon)
    assert mail_from(port, "x@throttled.example", 4).count(b"250 OK\r\n") == 3
    cluster.redis.kill()
    with RawClient(port) as client:
        client.reply()
        client.command(b"EHLO client.test")
        client.send(b"MAIL FROM:<y@throttled.example>\r\n")
        reply = client.reply()
        if on_failure == "error":
            assert reply + client.rest_until_close() == (
                b"421 4.3.0 mx.test technical difficulties\r\n"
            )
        else:
            assert reply == b"250 OK\r\n"  # counted as not throttled
    assert (
        metric(metrics_port, "policyd_throttle_redis_failures_total", {"on_failure": on_failure})
        >= 1
    )
    # Redis comes back on the same port: throttling resumes, no daemon restart.
    cluster.redis = RedisServer(cluster.workdir / "redis-again", port=cluster.redis.port)
    deadline = time.monotonic() + 5
    while (got := mail_from(port, "z@throttled.example", 1)) != [b"250 OK\r\n"]:
        assert time.monotonic() < deadline, got
        time.sleep(0.1)
    assert mail_from(port, "z@throttled.example", 3) == [b"250 OK\r\n"] * 2 + [
        b"451 4.7.1 z@throttled.example is sending too fast\r\n"
    ]


BY_EDGE = r"""
kumo.on('smtp_server_mail_from', function(sender, conn_meta)
  if conn_meta:get_meta('region') == 'eu' and sender.domain == 'us-only.example' then
    kumo.reject(550, '5.7.1 not from ' .. conn_meta:get_meta('edge_id'))
  end
end)
"""


def test_the_policy_tells_edges_apart(cluster) -> None:
    daemon = cluster.daemon(BY_EDGE)
    eu = cluster.edge(daemon, args=("--edge-id", "edge-eu-1", "--meta", "region=eu"))
    us = cluster.edge(daemon, args=("--edge-id", "edge-us-1", "--meta", "region=us"))
    assert mail_from(eu, "a@us-only.example", 1) == [b"550 5.7.1 not from edge-eu-1\r\n"]
    assert mail_from(us, "a@us-only.example", 1) == [b"250 OK\r\n"]


def test_the_daemon_sets_up_redis_before_the_first_throttle(cluster) -> None:
    """Connecting and loading the script inside a use's 0.1 s would fail the first
    mail after a start under load: the daemon does both as it starts."""
    from policyd.throttle import REDIS_GCRA

    sha = hashlib.sha1(REDIS_GCRA.encode()).hexdigest()
    assert cluster.redis.client.script_exists(sha) == [False]
    cluster.daemon(THROTTLED % "3/min")
    deadline = time.monotonic() + 5
    while cluster.redis.client.script_exists(sha) != [True]:
        assert time.monotonic() < deadline, "the throttle script was never loaded"
        time.sleep(0.02)
