"""The edge-daemon link: mutual TLS, edge identity, plaintext rules, admin
authorisation and Unix sockets, with the real processes and policyctl."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import Proc, refused_start, start_daemon, start_edge
from tests.smtpclient import RawClient

POLICY = """
kumo.on('smtp_server_mail_from', function(sender, meta)
  if sender.user == 'blocked' then kumo.reject(550, '5.7.1 blocked sender') end
end)
kumo.on('smtp_server_data', function(msg, meta)
  msg:append_header('X-Edge-Cert', meta:get_meta('edge_cert_subject') or 'none')
end)
"""
UNAVAILABLE = b" 4.3.0 mx.test policy service unavailable, try again later\r\n"


@pytest.fixture
def procs():
    started: list[Proc] = []
    yield started
    for proc in reversed(started):
        proc.stop()


def mtls_daemon(tmp_path: Path, certs: Path, procs: list[Proc], *extra: str) -> str:
    dev = certs / "dev"
    policy = tmp_path / "policy.lua"
    policy.write_text(POLICY)
    daemon, address = start_daemon(
        policy, tmp_path, "--decision-log", str(tmp_path / "decisions.jsonl"),
        "--tls-cert", str(dev / "server.crt"), "--tls-key", str(dev / "server.key"),
        "--tls-client-ca", str(dev / "ca.crt"), *extra,
    )  # fmt: skip
    procs.append(daemon)
    return address


def edge_dir(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


def send_mail(port: int, sender: bytes = b"a@example.com") -> list[bytes]:
    """The replies to a whole transaction, stopping at the first refusal."""
    with RawClient(port) as client:
        replies = [client.reply()]
        commands = (b"EHLO client.test", b"MAIL FROM:<" + sender + b">", b"RCPT TO:<b@x.test>")
        for line in (*commands, b"DATA"):
            if replies[-1][:1] not in (b"2", b"3"):
                return replies
            replies.append(client.command(line))
        replies.append(client.command(b"Subject: link\r\n\r\nbody\r\n."))
        return replies


def ctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "policyd.ctl", *args], capture_output=True, text=True, timeout=30
    )


def test_edge_with_a_valid_client_certificate(tmp_path, certs, procs) -> None:
    address = mtls_daemon(tmp_path, certs, procs)
    dev = certs / "dev"
    workdir = edge_dir(tmp_path, "edge")
    edge, port = start_edge(
        address.replace("127.0.0.1", "localhost"), workdir, "--edge-id", "edge-a",
        "--policy-tls-ca", str(dev / "ca.crt"),
        "--policy-tls-cert", str(dev / "edge-edge-a.crt"),
        "--policy-tls-key", str(dev / "edge-edge-a.key"),
    )  # fmt: skip
    procs.append(edge)
    assert send_mail(port, b"blocked@example.com")[-1] == b"550 5.7.1 blocked sender\r\n"
    assert send_mail(port)[-1].startswith(b"250 OK ids=")
    (stored,) = (workdir / "mail" / "new").iterdir()
    assert b"\r\nX-Edge-Cert: edge-a\r\n" in stored.read_bytes()
    connected = procs[0].wait_for_log(lambda e: e.get("msg") == "edge connected")
    assert connected["identity"] == "edge-a"
    procs[0].stop()  # flushes the decision log
    logged = (tmp_path / "decisions.jsonl").read_text().splitlines()
    assert logged and {json.loads(line)["edge_cert"] for line in logged} == {"edge-a"}


@pytest.mark.parametrize("client_cert", ["none", "other-ca"])
def test_edge_without_an_accepted_certificate_is_refused(
    tmp_path, certs, procs, client_cert
) -> None:
    address = mtls_daemon(tmp_path, certs, procs)
    cert_args = []
    if client_cert == "other-ca":
        other = certs / "other"
        cert_args = ["--policy-tls-cert", str(other / "edge-edge-a.crt"),
                     "--policy-tls-key", str(other / "edge-edge-a.key")]  # fmt: skip
    edge, port = start_edge(
        address, edge_dir(tmp_path, "edge"), "--edge-id", "edge-a",
        "--policy-tls-ca", str(certs / "dev" / "ca.crt"), *cert_args,
    )  # fmt: skip
    procs.append(edge)
    with RawClient(port) as client:
        assert client.reply() == b"421" + UNAVAILABLE
    assert not (tmp_path / "decisions.jsonl").read_text()
    # policyctl, talking gRPC directly, is refused the same way.
    refused = ctl("eval", "mail_from", "--server", address, "--sender", "a@example.com",
                  "--edge-id", "edge-a", "--tls-ca", str(certs / "dev" / "ca.crt"), *[
                      a.replace("--policy-", "--") for a in cert_args])  # fmt: skip
    assert refused.returncode == 1
    assert "UNAVAILABLE" in refused.stderr


def test_edge_id_contradicting_the_certificate_is_refused(tmp_path, certs, procs) -> None:
    address = mtls_daemon(tmp_path, certs, procs)
    dev = certs / "dev"
    tls = ["--tls-ca", str(dev / "ca.crt"), "--tls-cert", str(dev / "edge-edge-a.crt"),
           "--tls-key", str(dev / "edge-edge-a.key")]  # fmt: skip
    mail_from = ["eval", "mail_from", "--server", address, "--sender", "a@x.test"]
    refused = ctl(*mail_from, "--edge-id", "edge-b", *tls)
    assert refused.returncode == 1
    assert "PERMISSION_DENIED" in refused.stderr
    assert "edge id 'edge-b' does not match the client certificate (CN=edge-a)" in refused.stderr
    accepted = ctl(*mail_from, "--edge-id", "edge-a", *tls)
    assert accepted.returncode == 0, accepted.stderr
    # The edge itself, started with the wrong id, gets no verdicts.
    edge, port = start_edge(
        address, edge_dir(tmp_path, "edge"), "--edge-id", "edge-b",
        "--policy-tls-ca", str(dev / "ca.crt"),
        "--policy-tls-cert", str(dev / "edge-edge-a.crt"),
        "--policy-tls-key", str(dev / "edge-edge-a.key"),
    )  # fmt: skip
    procs.append(edge)
    assert send_mail(port, b"blocked@example.com")[-1].endswith(UNAVAILABLE)


def non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if address.startswith("127.") else address


def test_plaintext_to_a_non_loopback_address_needs_the_flag(tmp_path, procs) -> None:
    policy = tmp_path / "policy.lua"
    policy.write_text(POLICY)
    edge = refused_start(
        "smtpedge", "--listen", "127.0.0.1:0", "--policy-server", "192.0.2.10:50051"
    )
    assert edge.returncode == 2
    assert "refusing plaintext to the policy daemon at 192.0.2.10:50051" in edge.stderr
    daemon = refused_start("policyd", "--policy", str(policy), "--listen", "0.0.0.0:0")
    assert daemon.returncode == 2
    assert "0.0.0.0:0" in daemon.stderr and "--allow-plaintext" in daemon.stderr
    # With the flag, both start (the edge listens even before the daemon answers).
    workdir = edge_dir(tmp_path, "edge")
    started, _ = start_edge("192.0.2.10:50051", workdir, "--allow-plaintext")
    procs.append(started)
    host = non_loopback_address() or "0.0.0.0"
    server, _ = start_daemon(policy, tmp_path, "--allow-plaintext", listen=f"{host}:0")
    procs.append(server)


def test_admin_calls_need_the_token(tmp_path, procs) -> None:
    token = tmp_path / "admin.token"
    token.write_text("correct horse battery staple\n")
    wrong = tmp_path / "wrong.token"
    wrong.write_text("guess\n")
    policy = tmp_path / "policy.lua"
    policy.write_text(POLICY)
    daemon, address = start_daemon(policy, tmp_path, "--admin-token-file", str(token))
    procs.append(daemon)
    for command in ("status", "reload"):
        for args in ((), ("--token-file", str(wrong))):
            denied = ctl(command, "--server", address, *args)
            assert denied.returncode == 1, denied.stdout
            assert "PERMISSION_DENIED" in denied.stderr
        allowed = ctl(command, "--server", address, "--token-file", str(token))
        assert allowed.returncode == 0, allowed.stderr
    # Evaluation needs no admin rights, and health stays open for probes.
    assert ctl("eval", "mail_from", "--server", address, "--sender", "a@x.test").returncode == 0
    assert ctl("health", "--server", address).returncode == 0
    assert "correct horse" not in daemon.log_path.read_text()


def test_admin_calls_need_an_admin_certificate(tmp_path, certs, procs) -> None:
    address = mtls_daemon(tmp_path, certs, procs, "--admin-subject", "ops")
    dev = certs / "dev"

    def as_(name: str) -> list[str]:
        return ["--server", address, "--tls-ca", str(dev / "ca.crt"),
                "--tls-cert", str(dev / f"{name}.crt"),
                "--tls-key", str(dev / f"{name}.key")]  # fmt: skip

    for command in ("status", "reload"):
        denied = ctl(command, *as_("edge-edge-a"))  # an edge may evaluate, not administer
        assert denied.returncode == 1
        assert "PERMISSION_DENIED" in denied.stderr
        allowed = ctl(command, *as_("admin-ops"))
        assert allowed.returncode == 0, allowed.stderr
        assert json.loads(allowed.stdout)  # the status, or the reload outcome


def test_admin_calls_default_to_local_callers_only(tmp_path, procs) -> None:
    host = non_loopback_address()
    if host is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    policy = tmp_path / "policy.lua"
    policy.write_text(POLICY)
    daemon, address = start_daemon(policy, tmp_path, "--allow-plaintext", listen=f"{host}:0")
    procs.append(daemon)
    # From the machine's own non-loopback address, the caller is not local.
    denied = ctl("status", "--server", address)
    assert denied.returncode == 1
    assert "PERMISSION_DENIED" in denied.stderr
    assert ctl("eval", "mail_from", "--server", address, "--sender", "a@x.test").returncode == 0


def test_unix_sockets_between_edge_and_daemon(tmp_path, procs) -> None:
    policy = tmp_path / "policy.lua"
    policy.write_text(POLICY)
    path = f"unix:{tmp_path}/policyd.sock"
    daemon, address = start_daemon(policy, tmp_path, listen=path)
    procs.append(daemon)
    assert address == path
    workdir = edge_dir(tmp_path, "edge")
    edge, port = start_edge(address, workdir)
    procs.append(edge)
    assert send_mail(port, b"blocked@example.com")[-1] == b"550 5.7.1 blocked sender\r\n"
    assert send_mail(port)[-1].startswith(b"250 OK ids=")
    assert len(list((workdir / "mail" / "new").iterdir())) == 1
    assert ctl("status", "--server", address).returncode == 0  # local: admin allowed


def test_an_edge_cannot_claim_another_certificate_name(tmp_path, certs, procs) -> None:
    """edge_cert_subject comes from the verified certificate, never from the
    conn_meta an edge sends back; without a certificate there is none."""
    address = mtls_daemon(tmp_path, certs, procs)
    dev = certs / "dev"
    message = tmp_path / "message.eml"
    message.write_text("Subject: x\r\n\r\nbody\r\n")
    verdict = ctl(
        "eval", "data", "--server", address, "--edge-id", "edge-a",
        "--tls-ca", str(dev / "ca.crt"), "--tls-cert", str(dev / "edge-edge-a.crt"),
        "--tls-key", str(dev / "edge-edge-a.key"),
        "--sender", "a@x.test", "--recipient", "b@x.test", "--message", str(message),
        "--meta", 'edge_cert_subject="edge-b"',
    )  # fmt: skip
    assert verdict.returncode == 0, verdict.stderr
    assert "edge-a" in verdict.stdout and "edge-b" not in verdict.stdout
