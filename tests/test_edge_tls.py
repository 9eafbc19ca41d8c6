"""TLS and AUTH on the SMTP side of the edge, with real clients (smtplib, swaks)."""

from __future__ import annotations

import base64
import json
import shutil
import smtplib
import ssl
import subprocess
import urllib.request
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.procs import free_port, refused_start, start_daemon, start_edge

PASSWORD = "s3cret-Pa55w0rd-never-logged"

POLICY = """
kumo.on('smtp_server_auth_plain', function(authz, authc, password, meta)
  if authc == 'locked' then kumo.reject(454, '4.7.0 account locked, try later') end
  if authc == 'alice' and password == 'PASSWORD' then return true end
  if authc == 'daniel' and password == 'PASSWORD' then  -- KumoMTA's AuthInfo
    return {
      identities = {
        { identity = 'as-' .. authz, context = 'SmtpAuthPlainAuthorization' },
        { identity = 'daniel@corp.example', context = 'SmtpAuthPlainAuthentication' },
      },
      groups = { 'group1', 'group2' },
    }
  end
  if authc == 'nobody' then return { identities = {} } end
  local ip = meta:get_meta('received_from'):match('^(.*):%d+$')
  if kumo.make_throttle('auth-fail-' .. ip, '2/hour'):throttle().throttled then
    kumo.disconnect(421, '4.7.0 too many failed logins')
  end
  return false
end)

kumo.on('smtp_server_mail_from', function(sender, meta)
  if sender.user == 'needs-auth' and not meta:get_meta('authn_id') then
    kumo.reject(530, '5.7.0 authentication required')
  end
end)

kumo.on('smtp_server_data', function(msg, meta)
  for _, key in ipairs({'tls_protocol_version', 'tls_cipher', 'tls_peer_subject_name',
                        'authn_id', 'authz_id'}) do
    local value = meta:get_meta(key)
    if value then msg:append_header('X-' .. key, value) end
  end
  local info, identities = meta:auth_info(), {}
  for _, ident in ipairs(info.identities) do
    identities[#identities + 1] = ident.identity .. '/' .. ident.context
  end
  msg:append_header('X-auth-info', string.format('%s; %s; %s', info.peer_address,
    table.concat(identities, ' '), table.concat(info.groups, ' ')))
end)
""".replace("'PASSWORD'", repr(PASSWORD))


@pytest.fixture
def tls_stack(stack_factory, certs):
    def make(*edge_args: str):
        dev = certs / "dev"
        return stack_factory(
            POLICY,
            "--tls-cert", str(dev / "server.crt"),
            "--tls-key", str(dev / "server.key"),
            *edge_args,
        )  # fmt: skip

    return make


def client_context(certs: Path, cert: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=certs / "dev" / "ca.crt")
    if cert is not None:
        context.load_cert_chain(f"{cert}.crt", f"{cert}.key")
    return context


def message(sender: str = "a@example.com") -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "b@example.com", "tls test"
    msg.set_content("over TLS\n")
    return msg


def header_values(stored: bytes, name: str) -> list[str]:
    prefix = f"{name}: ".encode()
    return [
        line[len(prefix) :].decode() for line in stored.split(b"\r\n") if line.startswith(prefix)
    ]


def test_starttls_with_smtplib_gives_the_policy_the_tls_facts(tls_stack, certs) -> None:
    stack = tls_stack()
    with smtplib.SMTP("127.0.0.1", stack.port, timeout=10) as smtp:
        smtp.ehlo("client.test")
        assert smtp.has_extn("starttls")
        assert not smtp.has_extn("auth")  # only over TLS
        code, text = smtp.starttls(context=client_context(certs))
        assert (code, text) == (220, b"Ready to start TLS")
        smtp.ehlo("client.test")
        assert not smtp.has_extn("starttls")
        assert smtp.esmtp_features["auth"] == " LOGIN PLAIN"
        sock = smtp.sock
        assert isinstance(sock, ssl.SSLSocket)
        version, cipher = sock.version(), (sock.cipher() or ("",))[0]
        smtp.send_message(message())
    (stored,) = stack.stored_entries()
    assert header_values(stored.message, "X-tls_protocol_version") == [version]
    assert header_values(stored.message, "X-tls_cipher") == [cipher]
    assert header_values(stored.message, "X-tls_peer_subject_name") == []
    assert b" with ESMTPS id " in stored.received


def test_swaks_tls_delivers(tls_stack, certs) -> None:
    stack = tls_stack()
    exe = shutil.which("swaks")
    assert exe, "swaks is not installed: run scripts/install-system-deps"
    result = subprocess.run(
        [exe, "--server", "127.0.0.1", "--port", str(stack.port), "--helo", "client.test",
         "--tls", "--tls-verify", "--tls-ca-path", str(certs / "dev" / "ca.crt"),
         "--from", "a@example.com", "--to", "b@example.com", "--body", "via swaks"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "=== TLS started with cipher" in result.stdout
    assert "<~  250 OK ids=" in result.stdout  # '~': said inside TLS
    (stored,) = stack.stored()
    assert header_values(stored, "X-tls_protocol_version")[0].startswith("TLSv1.")


def test_require_tls_refuses_mail_before_starttls(tls_stack, certs) -> None:
    stack = tls_stack("--require-tls")
    with stack.greeted() as client:
        assert client.command(b"MAIL FROM:<a@example.com>") == (
            b"530 5.7.0 Must issue a STARTTLS command first\r\n"
        )
        assert client.command(b"RCPT TO:<b@example.com>") == (
            b"530 5.7.0 Must issue a STARTTLS command first\r\n"
        )
        assert client.command(b"DATA") == b"530 5.7.0 Must issue a STARTTLS command first\r\n"
        assert client.command(b"NOOP") == b"250 OK\r\n"  # the session goes on
    with smtplib.SMTP("127.0.0.1", stack.port, timeout=10) as smtp:
        smtp.starttls(context=client_context(certs))
        smtp.send_message(message())
    assert len(stack.stored()) == 1


def test_require_tls_needs_a_certificate(tmp_path) -> None:
    result = refused_start("smtpedge", "--require-tls", "--listen", "127.0.0.1:0")
    assert result.returncode == 2
    assert "--require-tls" in result.stderr and "--tls-cert" in result.stderr


def test_implicit_tls_listener(tls_stack, certs) -> None:
    stack = tls_stack("--tls-listen", "127.0.0.1:0")
    address = stack.edge.wait_for_log(lambda e: e.get("msg") == "listening" and "tls_address" in e)
    port = int(address["tls_address"].rsplit(":", 1)[1])
    with smtplib.SMTP_SSL("127.0.0.1", port, context=client_context(certs), timeout=10) as smtp:
        smtp.ehlo("client.test")
        assert not smtp.has_extn("starttls")
        assert smtp.has_extn("auth")
        smtp.login("alice", PASSWORD)
        smtp.send_message(message())
    (stored,) = stack.stored()
    assert header_values(stored, "X-authn_id") == ["alice"]
    assert header_values(stored, "X-tls_cipher") != []


def test_client_certificate_subject_reaches_the_policy(tls_stack, certs) -> None:
    stack = tls_stack("--tls-client-ca", str(certs / "dev" / "ca.crt"))
    context = client_context(certs, cert=str(certs / "dev" / "edge-client-1"))
    with smtplib.SMTP("127.0.0.1", stack.port, timeout=10) as smtp:
        smtp.starttls(context=context)
        smtp.send_message(message())
    # A client without a certificate is still served (the certificate is optional).
    with smtplib.SMTP("127.0.0.1", stack.port, timeout=10) as smtp:
        smtp.starttls(context=client_context(certs))
        smtp.send_message(message())
    subjects = sorted(tuple(header_values(m, "X-tls_peer_subject_name")) for m in stack.stored())
    assert subjects == [(), ("commonName=client-1",)]


def starttls_session(stack, certs) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", stack.port, timeout=10)
    smtp.starttls(context=client_context(certs))
    smtp.ehlo("client.test")
    return smtp


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_accepted_by_the_policy(tls_stack, certs, mechanism) -> None:
    stack = tls_stack()
    with starttls_session(stack, certs) as smtp:
        method = smtp.auth_plain if mechanism == "PLAIN" else smtp.auth_login
        smtp.user, smtp.password = "alice", PASSWORD
        assert smtp.auth(mechanism, method) == (235, b"2.7.0 Authentication successful")
        smtp.send_message(message("needs-auth@example.com"))
        assert smtp.docmd("AUTH", "PLAIN") == (503, b"Already authenticated")
    (stored,) = stack.stored_entries()
    assert header_values(stored.message, "X-authn_id") == ["alice"]
    assert header_values(stored.message, "X-authz_id") == ["alice"]
    assert header_values(stored.message, "X-auth-info") == [
        "127.0.0.1; alice/SmtpAuthPlainAuthorization alice/SmtpAuthPlainAuthentication; "
    ]
    assert b" with ESMTPSA id " in stored.received


def test_an_auth_info_return_grants_with_its_identities(tls_stack, certs) -> None:
    stack = tls_stack()
    with starttls_session(stack, certs) as smtp:
        blob = base64.b64encode(f"boss\0daniel\0{PASSWORD}".encode()).decode()
        assert smtp.docmd("AUTH", f"PLAIN {blob}") == (235, b"2.7.0 Authentication successful")
        smtp.send_message(message("needs-auth@example.com"))
    (stored,) = stack.stored_entries()
    assert header_values(stored.message, "X-authn_id") == ["daniel@corp.example"]
    assert header_values(stored.message, "X-authz_id") == ["as-boss"]
    assert header_values(stored.message, "X-auth-info") == [
        "127.0.0.1; as-boss/SmtpAuthPlainAuthorization"
        " daniel@corp.example/SmtpAuthPlainAuthentication; group1 group2"
    ]


def test_an_auth_info_without_identities_is_a_policy_error(tls_stack, certs) -> None:
    stack = tls_stack()
    with starttls_session(stack, certs) as smtp:
        blob = base64.b64encode(b"\0nobody\0pw").decode()
        assert smtp.docmd("AUTH", f"PLAIN {blob}") == (
            421,
            b"4.3.0 mx.test technical difficulties",
        )
    (error,) = [e for e in stack.daemon.log_lines() if e.get("msg") == "policy error"]
    assert "AuthInfo with an empty identities list" in error["error"]


def test_auth_refused_by_the_policy(tls_stack, certs) -> None:
    stack = tls_stack()
    with starttls_session(stack, certs) as smtp:
        blob = base64.b64encode(b"\0alice\0wrong").decode()
        assert smtp.docmd("AUTH", f"PLAIN {blob}") == (
            535,
            b"5.7.8 Authentication credentials invalid",
        )
        # The policy's own reject is sent as it is.
        blob = base64.b64encode(f"\0locked\0{PASSWORD}".encode()).decode()
        assert smtp.docmd("AUTH", f"PLAIN {blob}") == (454, b"4.7.0 account locked, try later")
        # Not authenticated: the policy refuses what needs it.
        assert smtp.docmd("MAIL", "FROM:<needs-auth@example.com>") == (
            530,
            b"5.7.0 authentication required",
        )


def test_auth_login_exchange_bytes(tls_stack, certs) -> None:
    """The LOGIN challenges and replies, byte for byte."""
    stack = tls_stack()
    with starttls_session(stack, certs) as smtp:
        assert smtp.docmd("AUTH", "LOGIN") == (334, base64.b64encode(b"Username:"))
        assert smtp.docmd(base64.b64encode(b"alice").decode()) == (
            334,
            base64.b64encode(b"Password:"),
        )
        assert smtp.docmd(base64.b64encode(b"wrong").decode()) == (
            535,
            b"5.7.8 Authentication credentials invalid",
        )
        assert smtp.docmd("AUTH", "LOGIN") == (334, base64.b64encode(b"Username:"))
        assert smtp.docmd("*") == (501, b"5.7.0 Auth aborted")
        assert smtp.docmd("AUTH", "PLAIN not-base64!") == (501, b"5.5.2 Can't decode base64")


def test_auth_is_not_offered_and_refused_without_tls(tls_stack) -> None:
    stack = tls_stack()
    with stack.client() as client:
        client.reply()
        ehlo = client.command(b"EHLO client.test")
        assert b"STARTTLS" in ehlo and b"AUTH" not in ehlo
        blob = base64.b64encode(f"\0alice\0{PASSWORD}".encode())
        assert client.command(b"AUTH PLAIN " + blob) == (
            b"538 5.7.11 Encryption required for requested authentication mechanism\r\n"
        )


def test_failed_logins_are_throttled_by_policy(tls_stack, certs) -> None:
    stack = tls_stack()
    with starttls_session(stack, certs) as smtp:
        for _ in range(2):
            assert (
                smtp.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0bob\0guess").decode())[0] == 535
            )
        code, text = smtp.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0bob\0guess").decode())
        assert (code, text) == (421, b"4.7.0 too many failed logins")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            smtp.noop()
    # The limit is per client address, across sessions; a good password still works
    # (the policy counts only failures).
    with starttls_session(stack, certs) as smtp:
        smtp.login("alice", PASSWORD)


def test_password_never_logged(certs, tmp_path) -> None:
    """Debug logs, the decision log and both metrics pages, after good and bad logins."""
    decisions = tmp_path / "decisions.jsonl"
    policy = tmp_path / "auth.lua"
    policy.write_text(POLICY)
    daemon_metrics, edge_metrics = free_port(), free_port()
    daemon, address = start_daemon(
        policy, tmp_path, "--log-level", "debug", "--decision-log", str(decisions),
        "--metrics", f"127.0.0.1:{daemon_metrics}",
    )  # fmt: skip
    dev = certs / "dev"
    edge, port = start_edge(
        address, tmp_path, "--log-level", "debug", "--metrics", f"127.0.0.1:{edge_metrics}",
        "--tls-cert", str(dev / "server.crt"), "--tls-key", str(dev / "server.key"),
    )  # fmt: skip
    try:
        outcomes = []
        for password in (PASSWORD, PASSWORD + "-wrong"):
            for mechanism in ("PLAIN", "LOGIN"):
                with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                    smtp.starttls(context=client_context(certs))
                    smtp.ehlo("client.test")
                    smtp.user, smtp.password = "alice", password
                    method = smtp.auth_plain if mechanism == "PLAIN" else smtp.auth_login
                    try:
                        outcomes.append(smtp.auth(mechanism, method)[0])
                    except smtplib.SMTPAuthenticationError as error:
                        outcomes.append(error.smtp_code)
        assert outcomes == [235, 235, 535, 535]
        pages = [
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
            for port in (daemon_metrics, edge_metrics)
        ]
    finally:
        edge.stop()
        daemon.stop()
    texts = {
        "daemon log": daemon.log_path.read_bytes(),
        "edge log": edge.log_path.read_bytes(),
        "decision log": decisions.read_bytes(),
        "daemon metrics": pages[0],
        "edge metrics": pages[1],
    }
    logged = [json.loads(line) for line in texts["decision log"].splitlines()]
    auth_decisions = [d for d in logged if d["event"] == "smtp_server_auth_plain"]
    assert [d["authc"] for d in auth_decisions] == ["alice"] * 4
    secrets = [PASSWORD.encode(), base64.b64encode(PASSWORD.encode())]
    secrets += [base64.b64encode(f"\0alice\0{PASSWORD}".encode())]
    for name, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"{secret!r} in the {name}"


@pytest.mark.parametrize("how", ["garbage", "disconnect"])
def test_a_failed_starttls_handshake_ends_the_session(tls_stack, certs, how) -> None:
    """Three clients break off the handshake; with room for two connections, a
    fourth is still served: nothing the broken ones held is kept."""
    stack = tls_stack("--max-connections", "2")
    for _ in range(3):
        client = stack.greeted()
        assert client.command(b"STARTTLS") == b"220 Ready to start TLS\r\n"
        if how == "garbage":
            client.send(b"this is not a TLS client hello\r\n" * 4)
            assert client.rest_until_close() == b""  # closed, no reply in the clear
        client.close()
    stack.edge.wait_for_log(
        lambda e: (
            len([x for x in stack.edge.log_lines() if x.get("msg") == "tls handshake failed"]) == 3
        )
    )
    with smtplib.SMTP("127.0.0.1", stack.port, timeout=10) as smtp:
        smtp.starttls(context=client_context(certs))
        smtp.send_message(message())
    assert len(stack.stored()) == 1
