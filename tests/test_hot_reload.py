"""Hot swap: validated, atomic, versioned policy reloads without restarts."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import grpc
import pytest

from policy.v1 import policy_pb2 as pb
from policy.v1 import policy_pb2_grpc as pb_grpc
from tests.procs import refused_start, start_daemon, start_edge
from tests.smtpclient import RawClient


def policy_rejecting(text: str) -> str:
    return f"kumo.on('smtp_server_mail_from', function() kumo.reject(550, '{text}') end)\n"


def cases_expecting(text: str) -> str:
    return f"""
[[case]]
name = "mail from is refused with {text}"
steps = [{{ mail_from = "a@example.com", expect = "reject 550 {text}" }}]
"""


class Admin:
    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = pb_grpc.PolicyAdminStub(self.channel)
        self.policy = pb_grpc.PolicyServiceStub(self.channel)

    def status(self) -> pb.StatusResponse:
        return self.stub.Status(pb.StatusRequest(), timeout=5)

    def reload(self) -> pb.ReloadResponse:
        return self.stub.Reload(pb.ReloadRequest(), timeout=30)

    def verdict(self) -> pb.Verdict:
        return self.policy.Evaluate(
            pb.EvaluateRequest(
                event="smtp_server_mail_from", mail_from=pb.MailFromArgs(sender="a@example.com")
            ),
            timeout=5,
        )

    def wait(self, predicate, timeout: float = 10) -> pb.StatusResponse:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if predicate(status):
                return status
            assert time.monotonic() < deadline, f"status never matched: {status}"
            time.sleep(0.02)


@pytest.fixture
def reloadable(tmp_path: Path):
    """A daemon and edge serving tmp_path/policy.lua; stops both at the end."""
    procs = []

    def start(policy: str, *daemon_args: str, tests: str | None = None):
        path = tmp_path / "policy.lua"
        path.write_text(policy)
        if tests is not None:
            (tmp_path / "policy.tests.toml").write_text(tests)
        daemon, address = start_daemon(path, tmp_path, *daemon_args)
        procs.append(daemon)
        edge, port = start_edge(address, tmp_path)
        procs.append(edge)
        return path, daemon, Admin(address), port

    yield start
    for proc in reversed(procs):
        proc.stop()


def write(path: Path, text: str) -> None:
    """Replaces a file the way editors and deploy tools do (write, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.rename(path)


def test_reloads_under_traffic_never_serve_a_broken_revision(reloadable, tmp_path) -> None:
    path, _, admin, port = reloadable(policy_rejecting("v1"), tests=cases_expecting("v1"))
    tests = tmp_path / "policy.tests.toml"
    good = {"v1": admin.status().active.id}
    replies: list[bytes] = []
    problems: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        for _ in range(5000):  # bounded; stops much earlier
            if stop.is_set():
                return
            try:
                with RawClient(port) as client:
                    client.reply()
                    client.command(b"EHLO load.test")
                    replies.append(client.command(b"MAIL FROM:<a@example.com>"))
                    client.command(b"QUIT")
            except Exception as e:
                problems.append(repr(e))

    # One session stays open across every change.
    long_lived = RawClient(port)
    long_lived.reply()
    long_lived.command(b"EHLO long.test")
    threads = [threading.Thread(target=traffic) for _ in range(2)]
    for t in threads:
        t.start()

    def fails_with(where: str) -> None:
        before = admin.status().failures
        status = admin.wait(lambda s: s.failures > before)
        assert where in status.last_failure.error, status.last_failure.error
        long_lived.command(b"RSET")
        assert long_lived.command(b"MAIL FROM:<a@example.com>") in (
            b"550 v1\r\n",
            b"550 v5\r\n",
        )

    def activates(version: str) -> None:
        before = admin.status().activations
        status = admin.wait(lambda s: s.activations > before)
        good[version] = status.active.id
        assert long_lived.command(b"MAIL FROM:<a@example.com>") == f"550 {version}\r\n".encode()

    time.sleep(0.3)
    write(path, policy_rejecting("v2") + "kumo.on('smtp_server_ehlo', function(\n")
    fails_with("policy.lua:3:")  # syntax error
    write(path, policy_rejecting("v3") + "local t = nil\nlocal x = t.field\n")
    fails_with("policy.lua:3: attempt to index a nil value")  # runtime error at load
    write(path, policy_rejecting("v4-fails-its-tests"))
    fails_with("policy.tests.toml:3: case 'mail from is refused with v1', step 1")
    write(tests, cases_expecting("v5"))
    fails_with("policy.tests.toml:3: case 'mail from is refused with v5'")  # v4 vs v5 tests
    write(path, policy_rejecting("v5"))
    activates("v5")
    write(path, policy_rejecting("v6 half") + "kumo.on('smtp_server_rcpt_to', funct")
    fails_with("policy.lua:2:")
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(30)
    long_lived.command(b"QUIT")
    long_lived.close()

    assert problems == []
    assert len(replies) > 20
    assert set(replies) <= {b"550 v1\r\n", b"550 v5\r\n"}
    assert {b"550 v1\r\n", b"550 v5\r\n"} <= set(replies)
    status = admin.status()
    assert status.active.id == good["v5"]
    assert (status.activations, status.failures) == (2, 5)
    assert (list(status.active.test_files), status.active.test_cases) == (["policy.tests.toml"], 1)
    # Every verdict the edge acted on came from a good revision.
    edge_log = (tmp_path / "smtpedge.log").read_text().splitlines()
    revisions = {json.loads(line).get("revision") for line in edge_log if '"refused"' in line}
    assert revisions == {good["v1"], good["v5"]}


@pytest.mark.parametrize("mode", ["events", "poll"])
def test_a_change_on_disk_serves_within_two_seconds_on_the_same_connection(
    reloadable, mode
) -> None:
    path, _, admin, port = reloadable(policy_rejecting("before"), "--watch", mode)
    with RawClient(port) as client:
        client.reply()
        client.command(b"EHLO client.test")
        assert client.command(b"MAIL FROM:<a@example.com>") == b"550 before\r\n"
        write(path, policy_rejecting("after"))
        changed = time.monotonic()
        while client.command(b"MAIL FROM:<a@example.com>") != b"550 after\r\n":
            assert time.monotonic() - changed < 2.0, "new revision not serving after 2 s"
            time.sleep(0.02)
    assert admin.status().active.trigger == "watch"


def test_reload_rpc_and_sighup_take_effect_at_once(reloadable) -> None:
    path, daemon, admin, port = reloadable(policy_rejecting("one"), "--watch", "off")
    with RawClient(port) as client:
        client.reply()
        client.command(b"EHLO client.test")
        write(path, policy_rejecting("two"))
        time.sleep(0.5)  # no watcher: nothing changes by itself
        assert client.command(b"MAIL FROM:<a@example.com>") == b"550 one\r\n"
        response = admin.reload()
        assert response.outcome == pb.ReloadResponse.OUTCOME_ACTIVATED
        assert client.command(b"MAIL FROM:<a@example.com>") == b"550 two\r\n"
        assert admin.reload().outcome == pb.ReloadResponse.OUTCOME_UNCHANGED

        write(path, policy_rejecting("three"))
        daemon.signal(signal.SIGHUP)
        status = admin.wait(lambda s: s.activations == 3, timeout=5)
        assert status.active.trigger == "sighup"
        assert client.command(b"MAIL FROM:<a@example.com>") == b"550 three\r\n"

        write(path, "this is not lua")
        response = admin.reload()
        assert response.outcome == pb.ReloadResponse.OUTCOME_FAILED
        assert "policy.lua:1:" in response.error
        assert response.revision == status.active.id  # the last good one serves on
        assert client.command(b"MAIL FROM:<a@example.com>") == b"550 three\r\n"


def test_revision_id_matches_status_and_follows_content(reloadable) -> None:
    path, _, admin, _ = reloadable(policy_rejecting("same"), "--watch", "off")
    first = admin.status().active
    assert admin.verdict().revision == first.id
    assert first.files == ["policy.lua"]
    assert first.handlers == ["smtp_server_mail_from"]

    path.write_text(policy_rejecting("same"))  # same bytes, new mtime
    assert admin.reload().outcome == pb.ReloadResponse.OUTCOME_UNCHANGED
    assert admin.verdict().revision == first.id

    path.write_text(policy_rejecting("same") + "-- a comment changes the content\n")
    assert admin.reload().outcome == pb.ReloadResponse.OUTCOME_ACTIVATED
    second = admin.status().active.id
    assert second != first.id
    assert admin.verdict().revision == second

    path.write_text(policy_rejecting("same"))
    admin.reload()
    assert admin.status().active.id == first.id == admin.verdict().revision


def test_a_directory_policy_reloads_when_only_a_module_changes(tmp_path) -> None:
    policy = tmp_path / "policy"
    (policy / "lib").mkdir(parents=True)
    (policy / "init.lua").write_text(
        "local rules = require 'lib.rules'\n"
        "kumo.on('smtp_server_mail_from', function() kumo.reject(550, rules.text) end)\n"
    )
    (policy / "lib" / "rules.lua").write_text("return { text = 'module v1' }\n")
    daemon, address = start_daemon(policy, tmp_path)
    edge, port = start_edge(address, tmp_path)
    try:
        admin = Admin(address)
        assert admin.status().active.files == ["init.lua", "lib/rules.lua"]
        with RawClient(port) as client:
            client.reply()
            client.command(b"EHLO client.test")
            assert client.command(b"MAIL FROM:<a@b.c>") == b"550 module v1\r\n"
            write(policy / "lib" / "rules.lua", "return { text = 'module v2' }\n")
            admin.wait(lambda s: s.activations == 2)
            assert client.command(b"MAIL FROM:<a@b.c>") == b"550 module v2\r\n"

            # A module outside the directory is refused; v2 serves on.
            (tmp_path / "secret.lua").write_text("return { text = 'outside' }\n")
            write(policy / "init.lua", "local s = require '..secret'\n")
            status = admin.wait(lambda s: s.failures == 1)
            assert "init.lua:1: require '..secret': not a module name" in status.last_failure.error
            assert client.command(b"MAIL FROM:<a@b.c>") == b"550 module v2\r\n"
    finally:
        edge.stop()
        daemon.stop()


def test_a_policy_failing_its_own_tests_is_refused_at_start(tmp_path) -> None:
    path = tmp_path / "policy.lua"
    path.write_text(policy_rejecting("actual"))
    (tmp_path / "policy.tests.toml").write_text(cases_expecting("expected"))
    result = refused_start("policyd", "--policy", str(path), "--listen", "127.0.0.1:0")
    assert result.returncode == 2
    assert (
        "policy.tests.toml:3: case 'mail from is refused with expected', step 1 "
        "(mail_from a@example.com): expected reject 550 expected, got reject 550 actual"
    ) in result.stderr
