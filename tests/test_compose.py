"""The docker compose dev stack: the file validates offline, and the whole stack
runs for real (two daemon replicas, Redis, two edges, the sink) when a Docker
engine can be started on this machine."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes
from pathlib import Path

import pytest

import compose
from tests.smtpclient import RawClient

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = Path(compose.__file__).parent / "docker-compose"


def run_compose(*args: str, env: dict[str, str] | None = None, timeout: float = 60, **kw):
    return subprocess.run(
        [str(COMPOSE), *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def config(path: Path, *profiles: str) -> dict:
    args = [a for p in profiles for a in ("--profile", p)]
    result = run_compose("-f", str(path), *args, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_compose_file_validates_and_keeps_its_promises() -> None:
    for profiles in ((), ("monitoring",)):
        selected = [f"--profile={p}" for p in profiles]
        checked = run_compose("-f", "compose.yaml", *selected, "config", "-q")
        assert checked.returncode == 0, checked.stderr
    stack = config(ROOT / "compose.yaml", "monitoring")
    services = stack["services"]
    assert set(services) == {"redis", "policyd", "edge-a", "edge-b", "sink", "prometheus"}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes beyond loopback: {port}"
        for dependency in service.get("depends_on", {}).values():
            assert dependency["condition"] == "service_healthy"
    assert services["policyd"]["deploy"]["replicas"] == 2
    assert stack["networks"]["backend"]["internal"] is True
    for name in ("redis", "sink", "policyd"):  # plaintext inside: unreachable from outside
        assert services[name]["networks"].keys() == {"backend"}
        assert not services[name].get("ports")
    edge_ids = {services[e]["environment"]["SMTPEDGE_EDGE_ID"] for e in ("edge-a", "edge-b")}
    assert edge_ids == {"edge-a", "edge-b"}
    for edge in ("edge-a", "edge-b"):
        command = services[edge]["command"]
        assert "--policy-server=policyd:50051" in command  # the service name: every replica
        assert "--relay=smtp://sink:2525" in command
    assert "monitoring" in services["prometheus"]["profiles"]


@pytest.mark.parametrize(
    "breakage",
    [
        ("condition: service_healthy", "condition: service_sleepy"),
        ("replicas: 2", "replicas: two"),
        ("  sink:\n    <<: *app", "  sink:\n    <<: *nothing"),
        ("      redis:\n        condition", "      rediz:\n        condition"),
    ],
    ids=["bad-condition", "bad-replicas", "unknown-anchor", "unknown-dependency"],
)
def test_a_broken_copy_does_not_validate(tmp_path, breakage) -> None:
    text = (ROOT / "compose.yaml").read_text()
    old, new = breakage
    assert old in text
    broken = tmp_path / "compose.yaml"
    broken.write_text(text.replace(old, new, 1))
    result = run_compose("-f", str(broken), "--project-directory", str(ROOT), "config", "-q")
    assert result.returncode != 0
    assert result.stderr.strip()


# The running stack ------------------------------------------------------------


@dataclass
class RunningStack:
    project: str
    env: dict[str, str]
    ports: dict[str, int]
    policy_dir: Path
    sink_dir: Path

    def compose(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return run_compose("-p", self.project, *args, env=self.env, timeout=timeout)

    def container_ids(self) -> dict[str, str]:
        result = self.compose("ps", "--format", "json")
        assert result.returncode == 0, result.stderr
        lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        return {entry["Name"]: entry["ID"] for entry in lines}

    def sunk(self) -> list[bytes]:
        new = self.sink_dir / "new"
        return [path.read_bytes() for path in sorted(new.iterdir())] if new.exists() else []


def engine_running() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0


@pytest.fixture
def docker_engine() -> Iterator[None]:
    """A Docker engine and the local base image. An engine this fixture started
    is stopped afterwards (images stay cached in the engine's storage)."""
    started = not engine_running()
    engine = subprocess.run(
        [str(ROOT / "scripts" / "docker-engine")], capture_output=True, text=True, timeout=300
    )
    if engine.returncode != 0:
        pytest.skip("no Docker engine can be started here: " + engine.stderr.strip()[-500:])
    try:
        base = subprocess.run(
            [str(ROOT / "scripts" / "docker-base")], capture_output=True, text=True, timeout=900
        )
        assert base.returncode == 0, base.stderr[-2000:]
        yield
    finally:
        if started:
            pid = int(Path("/var/run/docker.pid").read_text())
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                status = Path(f"/proc/{pid}/stat").read_text(errors="replace").split()
                if len(status) > 2 and status[2] == "Z":
                    break  # exited; its parent (init) reaps it
                time.sleep(0.2)


@pytest.fixture
def running_stack(docker_engine) -> Iterator[RunningStack]:
    work = Path(tempfile.mkdtemp(prefix="smtp-policy-stack-"))
    policy_dir, sink_dir = work / "policy", work / "sink"
    shutil.copytree(ROOT / "examples", policy_dir)
    sink_dir.mkdir()
    for path in (work, policy_dir, *policy_dir.iterdir()):
        path.chmod(0o755)  # the daemons run as an unprivileged user
    # Empty host ports: Docker picks free ones (no race with other tests), and
    # `docker compose port` tells which.
    ports_unset = ("EDGE_A_PORT", "EDGE_B_PORT", "EDGE_A_METRICS_PORT", "EDGE_B_METRICS_PORT")
    env = {name: "" for name in ports_unset}
    env |= {"POLICY_DIR": str(policy_dir), "SINK_DIR": str(sink_dir)}
    stack = RunningStack(f"smtp-policy-test-{os.getpid()}", env, {}, policy_dir, sink_dir)
    try:
        up = stack.compose("up", "-d", "--build", "--wait", "--wait-timeout", "180", timeout=900)
        if up.returncode != 0:
            logs = stack.compose("logs", "--no-color", "--tail", "40").stdout
            pytest.fail(f"compose up failed:\n{up.stdout[-4000:]}\n{up.stderr[-4000:]}\n{logs}")
        for service in ("edge-a", "edge-b"):
            published = stack.compose("port", service, "2525").stdout.strip()
            host, _, port = published.rpartition(":")
            assert host == "127.0.0.1", published
            stack.ports[service] = int(port)
        yield stack
    finally:
        # Shown by pytest only when the test failed: what the services said.
        print(stack.compose("logs", "--no-color", "--tail", "60").stdout)
        stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "10")
        # Builds superseded by this one (the current images stay tagged).
        subprocess.run(
            ["docker", "image", "prune", "-f", "--filter", "label=dev.smtp-policy.image"],
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(work, ignore_errors=True)


def session(port: int, helo: bytes = b"client.test") -> RawClient:
    client = RawClient(port, timeout=10)
    assert client.reply().startswith(b"220 ")
    assert client.command(b"EHLO " + helo).startswith(b"250-")
    return client


def deliver(port: int, sender: str, subject: str) -> bytes:
    with session(port) as client:
        assert client.command(f"MAIL FROM:<{sender}>".encode()) == b"250 OK\r\n"
        assert client.command(b"RCPT TO:<bob@example.com>") == b"250 OK\r\n"
        assert client.command(b"DATA").startswith(b"354 ")
        client.send(f"Subject: {subject}\r\nX-Internal: secret\r\n\r\nbody\r\n.\r\n".encode())
        reply = client.reply()
        client.command(b"QUIT")
    return reply


def mail_from(port: int, sender: str) -> bytes:
    with session(port) as client:
        return client.command(f"MAIL FROM:<{sender}>".encode())


def closed(client: RawClient) -> bool:
    return client.rest_until_close() == b""


@pytest.mark.timeout(1200)
def test_the_stack_end_to_end(running_stack: RunningStack) -> None:
    stack, a, b = running_stack, running_stack.ports["edge-a"], running_stack.ports["edge-b"]
    run = os.getpid()

    # Accepted through each edge, relayed to the sink with the policy's changes.
    for name, port in (("edge-a", a), ("edge-b", b)):
        assert re.fullmatch(
            rb"250 OK ids=[0-9a-f]{32}\r\n", deliver(port, "a@sender.example", name)
        )
    deadline = time.monotonic() + 10
    while len(stack.sunk()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    messages = {m["Subject"]: m for m in map(message_from_bytes, stack.sunk())}
    assert set(messages) == {"edge-a", "edge-b"}
    for name, message in messages.items():
        assert message["X-Policy-Checked"].startswith(f"{name}.mx.test for ")
        assert f"by {name}.mx.test (smtpedge)" in message["Received"]
        assert message["X-Internal"] is None  # removed by the policy
        assert message["X-RcptTo"] == "bob@example.com"

    # Rejected, on both edges, byte for byte.
    for port in (a, b):
        assert mail_from(port, "x@spam.example") == (
            b"550 5.7.1 mail from spam.example is not accepted here\r\n"
        )

    # Disconnected: ForceDisconnect, and FollowWith421 with the edge's own name.
    with session(a) as client:
        client.command(b"MAIL FROM:<c@sender.example>")
        assert client.command(b"RCPT TO:<spamtrap@example.com>") == b"554 5.7.1 go away\r\n"
        assert closed(client)
    with RawClient(b, timeout=10) as client:
        client.reply()
        assert client.command(b"EHLO edge-b.mx.test") == b"550 5.7.1 you are not me\r\n"
        assert client.reply() == b"421 edge-b.mx.test disconnecting due to previous error\r\n"
        assert closed(client)

    # Throttled across edges and replicas: 20/min per sender, counted in Redis.
    sender = f"burst-{run}@sender.example"
    # (One session per edge, MAIL and RSET in turn: quick enough that the limit,
    # one more every 3 s, does not refill meanwhile.)
    with session(a) as on_a, session(b) as on_b:
        replies = []
        for i in range(22):
            client = (on_a, on_b)[i % 2]
            replies.append(client.command(f"MAIL FROM:<{sender}>".encode()))
            assert client.command(b"RSET") == b"250 OK\r\n"
    assert replies[:20] == [b"250 OK\r\n"] * 20, replies
    for reply in replies[20:]:
        assert reply.startswith(f"451 4.7.1 too much mail from {sender}, try again in ".encode())

    # Both daemon replicas decided (each edge reaches every replica).
    logs = stack.compose("logs", "--no-color", "policyd").stdout
    deciders = {line.split("|")[0].strip() for line in logs.splitlines() if '"decision_id"' in line}
    assert len(deciders) == 2, deciders

    # Edit the mounted policy on the host: new verdicts, nothing restarted.
    before = stack.container_ids()
    assert mail_from(a, "x@blocked.example") == b"250 OK\r\n"
    policy = stack.policy_dir / "policy.lua"
    text = policy.read_text()
    old = "['spam.example'] = true }"
    assert old in text
    policy.write_text(text.replace(old, "['spam.example'] = true, ['blocked.example'] = true }"))
    expected = b"550 5.7.1 mail from blocked.example is not accepted here\r\n"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(mail_from(port, "x@blocked.example") == expected for port in (a, b, a, b)):
            break
        time.sleep(0.5)
    else:
        pytest.fail("the edited policy did not take effect within 30 s")
    assert stack.container_ids() == before

    # Tear down: every service stops on SIGTERM, well inside the 10 s stop timeout.
    began = time.monotonic()
    down = stack.compose("down", "--timeout", "10")
    took = time.monotonic() - began
    assert down.returncode == 0, down.stderr
    assert took < 10, f"docker compose down took {took:.1f} s"
    assert stack.container_ids() == {}
    for port in (a, b):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
