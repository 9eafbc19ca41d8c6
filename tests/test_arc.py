"""msg:arc_verify (RFC 8617): a chain sealed with dkimpy's ARC signer (the
sealing side of the library whose validator the daemon uses; no second
implementation is packaged for Python) validates, a tampered copy fails, a
message without a chain is none; keys through the daemon's resolver."""

from __future__ import annotations

import asyncio
from typing import Any

import dkim
from cryptography.hazmat.primitives import serialization

from policyd.dns.lookups import Dns
from policyd.dns.sources import StaticSource
from policyd.mailauth.arc import verify
from tests.smtpclient import send_message
from tests.test_dkim import RSA_KEY, RSA_RECORD

PEM = RSA_KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption(),
)
ZONE: dict[str, dict[str, Any]] = {"rsa._domainkey.example.com": {"TXT": [RSA_RECORD]}}
MESSAGE = (
    b"Authentication-Results: mx.example.com; spf=pass smtp.mailfrom=a@example.com\r\n"
    b"From: a@example.com\r\nTo: b@example.net\r\nSubject: sealed\r\n\r\nbody\r\n"
)


def sealed(message: bytes = MESSAGE) -> bytes:
    headers = dkim.arc_sign(
        message, b"rsa", b"example.com", PEM, b"mx.example.com",
        include_headers=[b"from", b"to", b"subject"],
    )  # fmt: skip
    return b"".join(headers) + message


def arc(message: bytes) -> dict[str, Any]:
    return asyncio.run(verify(Dns(StaticSource(ZONE)), message))


def test_a_sealed_chain_passes_a_tampered_one_fails_none_is_none() -> None:
    chain = sealed()
    assert arc(chain)["result"] == "pass"
    broken = arc(chain.replace(b"body", b"BODY"))
    assert broken["result"] == "fail" and broken["reason"]
    assert arc(MESSAGE) == {"method": "arc", "result": "none", "reason": None, "props": {}}
    down = asyncio.run(verify(Dns(StaticSource({"rsa._domainkey.example.com": {"fail": "x"}})),
                              chain))  # fmt: skip
    assert (down["result"], down["reason"]) == ("fail", "key unavailable: x")


def test_through_the_edge(stack_factory) -> None:
    stack = stack_factory(r"""
kumo.on('smtp_server_data', function(msg)
  local arc = msg:arc_verify()
  if arc.result == 'fail' then kumo.reject(550, '5.7.29 ARC Validation failure') end
  msg:append_header('X-ARC', arc.result)
end)
""")
    assert send_message(stack.port, MESSAGE).startswith(b"250 OK ids=")
    (entry,) = stack.stored_entries()
    assert b"X-ARC: none\r\n" in entry.message


def test_arc_seal_adds_a_set_that_validates(stack_factory, write_policy) -> None:
    write_policy(PEM.decode(), "arc.pem")
    stack = stack_factory(r"""
kumo.on('smtp_server_message_received', function(msg)
  local signer = kumo.dkim.rsa_sha256_signer {
    domain = 'example.com', selector = 'rsa', headers = { 'From', 'To', 'Subject' },
    key = 'arc.pem',
  }
  local spf = { method = 'spf', result = 'pass', props = { ['smtp.mailfrom'] = 'a@example.com' } }
  msg:arc_seal(signer, msg:get_meta('hostname'), { spf })
end)
""")
    body = b"From: a@example.com\r\nTo: b@example.net\r\nSubject: hop\r\n\r\nbody\r\n"
    assert send_message(stack.port, body).startswith(b"250 OK ids=")
    (entry,) = stack.stored_entries()
    assert entry.message.startswith(b"ARC-Seal: i=1; ")
    assert b"ARC-Authentication-Results: i=1; mx.test" in entry.message
    assert arc(entry.message)["result"] == "pass"
    records = {b"rsa._domainkey.example.com": RSA_RECORD.encode()}
    cv, _, _ = dkim.arc_verify(
        entry.message, dnsfunc=lambda n, timeout=5: records.get(n.rstrip(b"."))
    )
    assert cv == b"pass"
