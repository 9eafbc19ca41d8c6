"""kumo.dkim signers and msg:dkim_sign: signatures made by the daemon, with keys
from the policy directory, verified by dkimpy (an independent implementation)
on the message the edge stored."""

from __future__ import annotations

import base64
import subprocess
import sys
import time

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from tests.smtpclient import send_message

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


RECORDS = {
    b"rsa._domainkey.example.com": b"v=DKIM1; k=rsa; p="
    + base64.b64encode(
        RSA_KEY.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ),
    b"ed._domainkey.example.com": b"v=DKIM1; k=ed25519; p="
    + base64.b64encode(
        ED_KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ),
}


def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
    return RECORDS.get(name.rstrip(b"."))


BODY = (
    b"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject:  signed   here\r\n"
    b"\r\nHello  Bob.\r\n\r\n"
)


def send(port: int, body: bytes = BODY) -> bytes:
    return send_message(port, body, b"alice@example.com")


@pytest.mark.parametrize(
    ("function", "selector", "extra"),
    [
        ("rsa_sha256_signer", "rsa", ""),
        ("ed25519_signer", "ed", ""),
        ("rsa_sha256_signer", "rsa",
         "header_canonicalization = 'Simple', body_canonicalization = 'Simple',"),
        ("rsa_sha256_signer", "rsa", "over_sign = true, body_length = true, expiration = 3600,"),
        ("ed25519_signer", "ed", "agent_user_identifier = 'alice@example.com', over_sign = true,"),
    ],
)  # fmt: skip
def test_signatures_verify_with_dkimpy(
    stack_factory, write_policy, function: str, selector: str, extra: str
) -> None:
    write_policy(pem(RSA_KEY if selector == "rsa" else ED_KEY), "keys/dkim.pem")
    stack = stack_factory(f"""
kumo.on('smtp_server_message_received', function(msg)
  local signer = kumo.dkim.{function} {{
    domain = msg:from_header().domain, selector = '{selector}',
    headers = {{ 'From', 'To', 'Subject' }}, key = 'keys/dkim.pem', {extra}
  }}
  msg:dkim_sign(signer)
end)
""")
    assert send(stack.port).startswith(b"250 OK ids=")
    (entry,) = stack.stored_entries()
    assert entry.message.startswith(b"DKIM-Signature: v=1; a=")
    assert dkim.verify(entry.message, dnsfunc=dnsfunc)
    assert not dkim.verify(entry.message.replace(b"Hello", b"Jello"), dnsfunc=dnsfunc)
    tags = dict(dkim.util.parse_tag_value(entry.message.split(b"\r\nFrom:")[0][16:]))
    if "over_sign" in extra:
        assert tags[b"h"].lower() == b"from:from:to:to:subject:subject"
    if "expiration" in extra:
        assert int(tags[b"x"]) - int(tags[b"t"]) == 3600
        assert abs(int(tags[b"t"]) - time.time()) < 60
        assert int(tags[b"l"]) == len(b"Hello Bob.\r\n")


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ("selector = 's', headers = {'From'}, key = 'keys/dkim.pem'", "domain is required"),
        ("domain = 'd', selector = 's', headers = {}, key = 'keys/dkim.pem'",
         "headers is required"),
        ("domain = 'd', selector = 's', headers = {'From'}, key = 'keys/dkim.pem', bogus = 1",
         "unknown parameter 'bogus'"),
        ("domain = 'd', selector = 's', headers = {'From'}, key = '/etc/passwd'",
         "/etc/passwd"),
        ("domain = 'd', selector = 's', headers = {'From'}, key = { key_data = 'junk' }",
         "not an unencrypted PEM private key"),
    ],
)  # fmt: skip
def test_bad_signers_are_clear_errors(stack_factory, write_policy, params: str, error: str) -> None:
    write_policy(pem(ED_KEY), "keys/dkim.pem")  # an Ed25519 key: wrong for rsa_sha256_signer
    stack = stack_factory(f"""
kumo.on('smtp_server_message_received', function(msg)
  msg:dkim_sign(kumo.dkim.rsa_sha256_signer {{ {params} }})
end)
""")
    assert send(stack.port) == b"421 4.3.0 mx.test technical difficulties\r\n"
    (logged,) = [e for e in stack.daemon.log_lines() if e.get("msg") == "policy error"]
    assert "kumo.dkim.rsa_sha256_signer: " in logged["error"] and error in logged["error"]


def test_the_key_must_match_the_signer(stack_factory, write_policy) -> None:
    write_policy(pem(ED_KEY), "keys/dkim.pem")
    stack = stack_factory("""
kumo.on('smtp_server_message_received', function(msg)
  msg:dkim_sign(kumo.dkim.rsa_sha256_signer {
    domain = 'd', selector = 's', headers = { 'From' }, key = 'keys/dkim.pem' })
end)
""")
    send(stack.port)
    (logged,) = [e for e in stack.daemon.log_lines() if e.get("msg") == "policy error"]
    assert "the key is not an RSA key" in logged["error"]


def test_a_key_from_the_secrets_dir_signs_and_stays_out_of_the_revision(
    stack_factory, tmp_path_factory
) -> None:
    secrets = tmp_path_factory.mktemp("secrets")  # outside the policy directory
    secrets.chmod(0o700)
    (secrets / "dkim.pem").write_text(pem(RSA_KEY))
    stack = stack_factory(
        f"""
kumo.on('smtp_server_message_received', function(msg)
  msg:dkim_sign(kumo.dkim.rsa_sha256_signer {{
    domain = 'example.com', selector = 'rsa', headers = {{ 'From' }},
    key = '{secrets / "dkim.pem"}' }})
end)
""",
        daemon_args=("--secrets-dir", str(secrets)),
    )
    assert send(stack.port).startswith(b"250 OK ids=")
    (entry,) = stack.stored_entries()
    assert dkim.verify(entry.message, dnsfunc=dnsfunc)
    logs = stack.daemon.log_lines()
    (activated,) = [e for e in logs if e.get("msg") == "policy activated"]
    assert activated["files"] == ["policy.lua"]
    assert not any("BEGIN PRIVATE KEY" in str(e) for e in logs)


def test_an_open_secrets_dir_is_refused_at_start(tmp_path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    secrets.chmod(0o755)
    (tmp_path / "policy.lua").write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "policyd", "serve", "--policy", str(tmp_path / "policy.lua"),
         "--secrets-dir", str(secrets), "--listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode != 0
    assert "is open to others (mode 755); chmod o-rwx it" in result.stderr
