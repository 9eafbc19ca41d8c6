"""--workers: several processes on one port, supervised, reloading together."""

from __future__ import annotations

import signal
import time
import urllib.request

import grpc
import psutil
from prometheus_client.parser import text_string_to_metric_families

from policy.v1 import policy_pb2 as pb
from policy.v1 import policy_pb2_grpc as pb_grpc
from tests.procs import free_port, refused_start, start_daemon, start_edge
from tests.test_failover import POLICY, Session, check_sessions, transaction


def worker_pids(proc) -> list[int]:
    return [p.pid for p in psutil.Process(proc.popen.pid).children(recursive=True)]


def statuses(address: str, connections: int) -> set[str]:
    """The active revision reported over several separate connections."""
    seen = set()
    for _ in range(connections):
        channel = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        try:
            status = pb_grpc.PolicyAdminStub(channel).Status(pb.StatusRequest(), timeout=5)
            seen.add(status.active.id)
        finally:
            channel.close()
    return seen


def test_daemon_workers_serve_one_port_and_reload_together(tmp_path) -> None:
    policy = tmp_path / "policy.lua"
    policy.write_text("kumo.on('smtp_server_mail_from', function() kumo.reject(550, 'one') end)\n")
    metrics_port = free_port()
    daemon, address = start_daemon(
        policy,
        tmp_path,
        "--workers",
        "3",
        "--watch",
        "off",
        "--metrics",
        f"127.0.0.1:{metrics_port}",
    )
    try:
        assert len(worker_pids(daemon)) >= 3
        first = statuses(address, 12)
        assert len(first) == 1
        policy.write_text(
            "kumo.on('smtp_server_mail_from', function() kumo.reject(550, 'two') end)\n"
        )
        channel = grpc.insecure_channel(address)
        reply = pb_grpc.PolicyAdminStub(channel).Reload(pb.ReloadRequest(), timeout=10)
        channel.close()
        assert reply.outcome == pb.ReloadResponse.OUTCOME_ACTIVATED
        deadline = time.monotonic() + 5
        while (now := statuses(address, 12)) != {reply.revision}:  # the others follow at once
            assert time.monotonic() < deadline, now
            time.sleep(0.05)
        # The metrics of all workers together: each worker's active revision is the new one.
        revisions = {
            (sample.labels["revision"], sample.value)
            for family in text_string_to_metric_families(
                urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
            )
            for sample in family.samples
            if sample.name == "policyd_revision_info"
        }
        assert (reply.revision, 1.0) in revisions
        assert (first.pop(), 0.0) in revisions
    finally:
        assert daemon.stop() == 0
    assert not [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(tmp_path) in " ".join(p.info["cmdline"] or [])
    ]


def test_a_broken_policy_is_refused_before_workers_start(tmp_path) -> None:
    policy = tmp_path / "policy.lua"
    policy.write_text("kumo.on('smtp_server_mail_from', function(\n")
    result = refused_start(
        "policyd", "--policy", str(policy), "--listen", "127.0.0.1:0", "--workers", "2"
    )
    assert result.returncode == 2
    assert "policy.lua:2:" in result.stderr


def test_edge_workers_share_the_port_and_stop_cleanly(tmp_path) -> None:
    policy = tmp_path / "policy.lua"
    policy.write_text(POLICY)
    daemon, address = start_daemon(policy, tmp_path)
    edge, port = start_edge(address, tmp_path, "--workers", "2")
    try:
        workers = worker_pids(edge)
        assert len(workers) >= 2
        sessions: list[Session] = [transaction(port, n) for n in range(30)]
        check_sessions(sessions, tmp_path / "mail")
        assert all(s.accepted for s in sessions)
        served_by = {
            e.get("session_id") and e["process"]
            for e in edge.log_lines()
            if e.get("msg") == "accepted"
        }
        assert len(served_by) == 2, "both workers accepted mail"
        edge.signal(signal.SIGTERM)
        assert edge.popen.wait(20) == 0
        deadline = time.monotonic() + 5  # helpers such as multiprocessing's tracker follow
        while any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in workers):
            assert time.monotonic() < deadline, "a worker outlived the supervisor"
            time.sleep(0.05)
    finally:
        edge.stop()
        daemon.stop()
