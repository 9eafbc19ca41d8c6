"""Operability: tracing a refusal, metrics, health and reflection, policyctl, dry run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.procs import free_port, start_daemon
from tests.smtpclient import RawClient

REJECTING = r"""
kumo.on('smtp_server_mail_from', function(sender)
  if sender.user == 'slow' then kumo.sleep(0.05) end
  if sender.domain == 'blocked.example' then kumo.reject(550, '5.7.1 blocked sender') end
end)
"""


def decisions(daemon, wanted=lambda d: True, count: int = 1, timeout: float = 5) -> list[dict]:
    """Decision log lines (the daemon's stdout), waiting for the periodic flush."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in daemon.log_lines() if "decision_id" in e and wanted(e)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def mail(port: int, sender: bytes) -> bytes:
    with RawClient(port) as client:
        client.reply()
        client.command(b"EHLO client.test")
        return client.command(b"MAIL FROM:<" + sender + b">")


def test_a_refused_session_can_be_traced_across_edge_and_daemon(stack_factory) -> None:
    # Room for the handler's 50 ms sleep on a loaded machine, at both ends.
    stack = stack_factory(REJECTING, "--policy-timeout", "5", daemon_args=("--eval-timeout", "2"))
    reply = mail(stack.port, b"slow@blocked.example")
    assert reply == b"550 5.7.1 blocked sender\r\n", stack.edge.log_lines()
    (refused,) = [e for e in stack.edge.log_lines() if e.get("msg") == "refused"]
    (decision,) = decisions(stack.daemon, lambda d: d["decision_id"] == refused["decision_id"])
    assert decision["session_id"] == refused["session_id"]
    assert decision["revision"] == refused["revision"]
    assert decision["event"] == "smtp_server_mail_from"
    assert decision["sender"] == "slow@blocked.example"
    assert (decision["action"], decision["code"], decision["text"]) == (
        "reject",
        550,
        "5.7.1 blocked sender",
    )
    assert decision["mode"] == "If421"
    assert decision["edge_id"] == "mx.test" and decision["peer"].startswith("127.0.0.1:")
    # In milliseconds, host calls included: the handler slept 50 ms of its 2,000
    # (the event loop's timers keep milliseconds, so the sleep may end a little early).
    assert 49 <= decision["eval_ms"] < 2000
    assert refused["reply"] == ["550 5.7.1 blocked sender"]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_on_both_processes_move_with_traffic(process_stack_factory) -> None:
    edge_port, daemon_port = free_port(), free_port()
    stack = process_stack_factory(
        REJECTING + "kumo.on('smtp_server_data', function() end)\n",
        "--metrics", f"127.0.0.1:{edge_port}",
        daemon_args=("--metrics", f"127.0.0.1:{daemon_port}"),
    )  # fmt: skip
    edge_before, daemon_before = scrape(edge_port), scrape(daemon_port)
    for _ in range(3):
        assert mail(stack.port, b"x@blocked.example") == b"550 5.7.1 blocked sender\r\n"
    with stack.greeted() as client:
        client.command(b"MAIL FROM:<ok@example.com>")
        client.command(b"RCPT TO:<r@example.com>")
        client.command(b"DATA")
        client.send(b"Subject: counted\r\n\r\nbody\r\n.\r\n")
        assert client.reply().startswith(b"250 OK ids=")
    edge, daemon = scrape(edge_port), scrape(daemon_port)

    def moved(samples, before, name, **labels):
        return value(samples, name, **labels) - value(before, name, **labels)

    reject = {"event": "smtp_server_mail_from", "action": "reject"}
    assert moved(daemon, daemon_before, "policyd_evaluations_total", **reject) == 3
    assert moved(daemon, daemon_before, "policyd_evaluations_total",
                 event="smtp_server_mail_from", action="continue") == 1  # fmt: skip
    assert moved(daemon, daemon_before, "policyd_evaluation_seconds_count",
                 event="smtp_server_mail_from") == 4  # fmt: skip
    assert value(daemon, "policyd_reloads_total", outcome="activated") == 1
    assert any(name == "policyd_revision_info" for name, _ in daemon)

    assert moved(edge, edge_before, "smtpedge_sessions_total") == 4
    assert moved(edge, edge_before, "smtpedge_commands_total", command="MAIL") == 4
    assert moved(edge, edge_before, "smtpedge_replies_total", **{"class": "5xx"}) == 3
    assert moved(edge, edge_before, "smtpedge_policy_call_seconds_count", stage="mail") == 4
    assert moved(edge, edge_before, "smtpedge_messages_accepted_total") == 1
    assert moved(edge, edge_before, "smtpedge_message_bytes_total") > len(b"Subject: counted")
    with stack.greeted():
        assert value(scrape(edge_port), "smtpedge_sessions_open") == 1
    deadline = time.monotonic() + 5  # the edge notices the close a moment later
    while value(scrape(edge_port), "smtpedge_sessions_open") != 0:
        assert time.monotonic() < deadline, "the closed session is still counted as open"
        time.sleep(0.05)


def test_health_follows_the_policy_and_reflection_lists_the_services(tmp_path: Path) -> None:
    policy = tmp_path / "policy.lua"
    policy.write_text("kumo.on('smtp_server_mail_from', function(\n")  # broken
    daemon, address = start_daemon(policy, tmp_path, "--wait-for-policy", "--poll-interval", "0.2")
    channel = grpc.insecure_channel(address)
    health: Any = health_pb2_grpc.HealthStub(channel)  # the stubs do not know its methods

    def status(service: str = "policy.v1.PolicyService") -> int:
        return health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status

    try:
        assert status() == health_pb2.HealthCheckResponse.NOT_SERVING
        assert status("") == health_pb2.HealthCheckResponse.NOT_SERVING
        from policy.v1 import policy_pb2 as pb
        from policy.v1 import policy_pb2_grpc as pb_grpc

        with pytest.raises(grpc.RpcError) as err:
            pb_grpc.PolicyServiceStub(channel).Evaluate(
                pb.EvaluateRequest(event="smtp_server_mail_from", mail_from=pb.MailFromArgs()),
                timeout=5,
            )
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        policy.write_text("kumo.on('smtp_server_mail_from', function() end)\n")
        deadline = time.monotonic() + 5
        while status() != health_pb2.HealthCheckResponse.SERVING:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
        assert {"policy.v1.PolicyService", "policy.v1.PolicyAdmin", "grpc.health.v1.Health"} <= set(
            services
        )
    finally:
        channel.close()
        daemon.stop()


def policyctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "policyd.ctl", *args], capture_output=True, text=True, timeout=60
    )


def test_policyctl_check(write_policy) -> None:
    good = policyctl("check", str(write_policy(REJECTING, "good.lua")))
    assert good.returncode == 0
    assert "handlers: smtp_server_mail_from" in good.stdout
    broken = policyctl("check", str(write_policy("kumo.on('smtp_server_ehlo', 42)\n", "bad.lua")))
    assert broken.returncode == 2
    assert "bad.lua:1: bad argument #2 to kumo.on" in broken.stderr


TESTED = r"""
local t = kumo.make_throttle('per-sender', '2/min')
kumo.on('smtp_server_mail_from', function(sender)
  if sender.domain == 'blocked.example' then
    kumo.reject(550, '5.7.1 blocked sender')
  end
  if t:throttle().throttled then
    kumo.reject(451, '4.7.1 slow down')
  end
end)
"""

CASES = """
[[case]]
name = "blocked"
steps = [{ mail_from = "x@blocked.example", expect = "reject 550 5.7.1 blocked sender" }]

[[case]]
name = "throttled, then a minute later fine again"
steps = [
  { mail_from = "a@ok.example" },
  { mail_from = "a@ok.example" },
  { mail_from = "a@ok.example", expect = "reject 451 4.7.1 slow down" },
  { wait = 60 },
  { mail_from = "a@ok.example" },
]
"""


def test_policyctl_test_passes_and_reports_coverage(write_policy) -> None:
    path = write_policy(TESTED)
    write_policy(CASES, "policy.tests.toml")
    result = policyctl("test", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS policy.tests.toml:3 blocked" in result.stdout
    assert "2 passed, 0 failed" in result.stdout
    assert "policy.lua:3-10 smtp_server_mail_from: 5/5 lines run; not run: none" in result.stdout


def test_policyctl_test_fails_with_a_diff(write_policy) -> None:
    path = write_policy(TESTED)
    write_policy(CASES.replace("reject 451 4.7.1 slow down", "reject 451 4.7.1 go slower"),
                 "policy.tests.toml")  # fmt: skip
    result = policyctl("test", "--no-coverage", str(path))
    assert result.returncode == 1
    assert "FAIL policy.tests.toml:7 throttled, then a minute later fine again" in result.stdout
    assert "step 3 (mail_from a@ok.example)" in result.stdout
    assert "- expected: reject 451 4.7.1 go slower" in result.stdout
    assert "+ got:      reject 451 4.7.1 slow down" in result.stdout
    assert "1 passed, 1 failed" in result.stdout


def test_policyctl_eval_status_reload(tmp_path: Path) -> None:
    policy = tmp_path / "policy.lua"
    policy.write_text(REJECTING)
    daemon, address = start_daemon(policy, tmp_path, "--watch", "off")
    try:
        result = policyctl(
            "eval", "--server", address, "mail_from", "--sender", "x@blocked.example"
        )
        assert result.returncode == 0, result.stderr
        verdict = json.loads(result.stdout)
        assert (verdict["action"], verdict["code"], verdict["text"]) == (
            "ACTION_REJECT",
            550,
            "5.7.1 blocked sender",
        )
        status = json.loads(policyctl("status", "--server", address).stdout)
        assert status["active"]["id"] == verdict["revision"]
        assert status["active"]["handlers"] == ["smtp_server_mail_from"]

        policy.write_text("broken(")
        failed = policyctl("reload", "--server", address)
        assert failed.returncode == 1
        assert json.loads(failed.stdout)["outcome"] == "OUTCOME_FAILED"
        policy.write_text("kumo.on('smtp_server_rcpt_to', function() end)\n")
        done = policyctl("reload", "--server", address)
        assert done.returncode == 0
        assert json.loads(done.stdout)["outcome"] == "OUTCOME_ACTIVATED"
        status = json.loads(policyctl("status", "--server", address).stdout)
        assert status["active"]["handlers"] == ["smtp_server_rcpt_to"]
        assert "policy.lua:1" in status["last_failure"]["error"]
        refused = policyctl("eval", "--server", "127.0.0.1:1", "connection_accepted")
        assert refused.returncode == 1 and "UNAVAILABLE" in refused.stderr
    finally:
        daemon.stop()


REJECT_ALL = "kumo.on('smtp_server_mail_from', function() kumo.reject(550, '5.7.1 no') end)\n"


@pytest.mark.parametrize("where", ["daemon", "edge"])
def test_dry_run_lets_mail_through_and_logs_the_would_be_rejects(stack_factory, where) -> None:
    stack = stack_factory(
        REJECT_ALL,
        *(["--dry-run"] if where == "edge" else []),
        daemon_args=("--dry-run",) if where == "daemon" else (),
    )
    with stack.greeted() as client:
        assert client.command(b"MAIL FROM:<a@example.com>") == b"250 OK\r\n"
        client.command(b"RCPT TO:<b@example.com>")
        client.command(b"DATA")
        client.send(b"Subject: dry\r\n\r\nbody\r\n.\r\n")
        assert client.reply().startswith(b"250 OK ids=")
    assert len(stack.stored()) == 1
    (decision,) = decisions(stack.daemon, lambda d: d["event"] == "smtp_server_mail_from")
    assert decision["dry_run"] is True
    assert (decision["action"], decision["code"], decision["text"]) == ("reject", 550, "5.7.1 no")


AUTH = r"""
kumo.on('smtp_server_auth_plain', function(authz, authc, password, conn_meta)
  return authc == 'alice' and password == 'secret'
end)
kumo.on('smtp_server_mail_from', function(sender, conn_meta)
  if conn_meta:get_meta('authn_id') ~= 'alice' then kumo.reject(530, '5.7.0 log in first') end
end)
"""

AUTH_CASES = """
[[case]]
name = "a good login lets mail through"
steps = [
  { ehlo = "client.example" },
  { mail_from = "a@example.com", expect = "reject 530 5.7.0 log in first" },
  { auth_plain = { authc = "alice", password = "wrong" } },
  { mail_from = "a@example.com", expect = "reject 530" },
  { auth_plain = { authc = "alice", password = "secret" } },
  { mail_from = { sender = "a@example.com", params = ["SIZE=10"] } },
]
"""


def test_policy_test_cases_can_log_in(write_policy) -> None:
    path = write_policy(AUTH)
    write_policy(AUTH_CASES, "policy.tests.toml")
    result = policyctl("test", "--no-coverage", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 0 failed" in result.stdout
    # The same steps with a wrong password at the grant: the last MAIL is refused.
    write_policy(
        AUTH_CASES.replace('password = "secret"', 'password = "nope"'), "policy.tests.toml"
    )
    result = policyctl("test", "--no-coverage", str(path))
    assert result.returncode == 1
    assert "step 6 (mail_from" in result.stdout and "+ got:      reject 530" in result.stdout
