"""msg:dkim_verify: messages signed by a signer written here from RFC 6376 and
RFC 8463 on `cryptography` alone (independent of dkimpy, which verifies),
rsa-sha256 and ed25519-sha256, relaxed and simple; tampered, expired and
keyless copies; through the static resolver and through the real edge."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from policyd.dns.lookups import Dns
from policyd.dns.sources import StaticSource
from policyd.mailauth.dkim import verify
from tests.harness import Servers
from tests.mailstore import read_maildir
from tests.smtpclient import RawClient
from tests.test_dns import DnsServer

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ED_KEY = ed25519.Ed25519PrivateKey.generate()
SPKI = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
)
ED_RAW = ED_KEY.public_key().public_bytes(
    serialization.Encoding.Raw, serialization.PublicFormat.Raw
)
RSA_RECORD = "v=DKIM1; k=rsa; p=" + base64.b64encode(SPKI).decode()
ED_RECORD = "v=DKIM1; k=ed25519; p=" + base64.b64encode(ED_RAW).decode()
ZONE: dict[str, dict[str, Any]] = {
    "rsa._domainkey.example.com": {"TXT": [RSA_RECORD]},
    "ed._domainkey.example.com": {"TXT": [ED_RECORD]},
    "down._domainkey.example.com": {"fail": "SERVFAIL"},
}

MESSAGE = (
    b"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\n"
    b"Subject:  Hello   there \r\n\tfolded\r\nDate: Fri, 4 Dec 2026 21:00:00 +0000\r\n\r\n"
    b"Hi Bob,  this is  the body.\r\n\r\nBye.\r\n\r\n\r\n"
)


def _relaxed_header(name: bytes, value: bytes) -> bytes:
    value = re.sub(rb"\r\n(?=[ \t])", b"", value)
    value = re.sub(rb"[ \t]+", b" ", value).strip(b" ")
    return name.lower().strip() + b":" + value


def _body(body: bytes, canon: str) -> bytes:
    if canon == "relaxed":
        lines = [re.sub(rb"[ \t]+", b" ", line).rstrip(b" ") for line in body.split(b"\r\n")]
        body = b"\r\n".join(lines)
    body = body.rstrip(b"\r\n")
    return body + b"\r\n" if body or canon == "simple" else b""


def sign(message: bytes, selector: str, canon: str = "relaxed/relaxed", **extra: str) -> bytes:
    """The message with a DKIM-Signature prepended, made from the RFCs here."""
    head, body = message.split(b"\r\n\r\n", 1)
    header_canon, body_canon = canon.split("/")
    fields = re.findall(rb"([^:\r\n]+):((?:[^\r\n]*(?:\r\n[ \t])?)*[^\r\n]*)\r\n", head + b"\r\n")
    algorithm = "ed25519-sha256" if selector == "ed" else "rsa-sha256"
    bh = base64.b64encode(hashlib.sha256(_body(body, body_canon)).digest()).decode()
    tags = {"v": "1", "a": algorithm, "c": canon, "d": "example.com", "s": selector,
            "h": "from:to:subject:date", "bh": bh, **extra, "b": ""}  # fmt: skip
    signature = "; ".join(f"{k}={v}" for k, v in tags.items())
    signed = b""
    for wanted in (b"from", b"to", b"subject", b"date"):
        name, value = next((n, v) for n, v in fields if n.lower() == wanted)
        signed += (
            _relaxed_header(name, value) if header_canon == "relaxed" else name + b":" + value
        ) + b"\r\n"
    own = (b"DKIM-Signature", b" " + signature.encode())
    signed += _relaxed_header(*own) if header_canon == "relaxed" else own[0] + b":" + own[1]
    if selector == "ed":
        raw = ED_KEY.sign(hashlib.sha256(signed).digest())
    else:
        raw = RSA_KEY.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    return b"DKIM-Signature: " + signature.encode() + base64.b64encode(raw) + b"\r\n" + message


def results(message: bytes) -> list[tuple[str, str | None]]:
    found = asyncio.run(verify(Dns(StaticSource(ZONE)), message))
    return [(r["result"], r["reason"]) for r in found]


@pytest.mark.parametrize("selector", ["rsa", "ed"])
@pytest.mark.parametrize("canon", ["relaxed/relaxed", "simple/simple", "relaxed/simple"])
def test_signatures_made_independently_verify(selector: str, canon: str) -> None:
    assert results(sign(MESSAGE, selector, canon)) == [("pass", None)]


def test_kumomta_s_properties() -> None:
    (result,) = asyncio.run(verify(Dns(StaticSource(ZONE)), sign(MESSAGE, "rsa", t="1")))
    props = result["props"]
    assert props["header.d"] == "example.com" and props["header.i"] == "@example.com"
    assert (props["header.s"], props["header.a"]) == ("rsa", "rsa-sha256")
    assert (props["header.c"], props["header.t"]) == ("relaxed/relaxed", "1")
    assert len(props["header.b"]) == 8
    assert result["method"] == "dkim"


def test_tampered_expired_and_keyless_copies_do_not_pass() -> None:
    signed = sign(MESSAGE, "rsa")
    ((result, reason),) = results(signed.replace(b"the body", b"the bodY"))
    assert result == "fail" and reason is not None and reason.startswith("body hash mismatch")
    assert results(signed.replace(b"Hello", b"Jello")) == [("fail", "signature did not verify")]
    expired = sign(MESSAGE, "ed", x=str(int(time.time()) - 2 * 86400))  # dkimpy allows 10 h
    ((result, reason),) = results(expired)
    assert result == "permerror" and reason is not None and "x=" in reason
    ((result, _),) = results(sign(MESSAGE, "missing"))
    assert result == "permerror"
    assert results(sign(MESSAGE, "down")) == [("temperror", "key unavailable: SERVFAIL")]


def test_each_signature_has_its_result_and_none_gives_none() -> None:
    both = sign(sign(MESSAGE, "rsa"), "ed")
    assert [r for r, _ in results(both)] == ["pass", "pass"]
    assert results(MESSAGE) == []


POLICY = r"""
kumo.on('smtp_server_message_received', function(msg)
  msg:add_authentication_results(msg:get_meta('hostname'), msg:dkim_verify())
end)
"""


def test_through_the_edge_with_keys_from_a_dns_server(tmp_path, servers: Servers) -> None:
    half = len(RSA_RECORD) // 2  # a TXT record of two strings, as long keys come
    dns = DnsServer(
        tmp_path, {"rsa._domainkey.example.com": {"TXT": [[RSA_RECORD[:half], RSA_RECORD[half:]]]}}
    )
    try:
        policy = tmp_path / "policy.lua"
        policy.write_text(POLICY)
        _, address = servers.daemon(policy, tmp_path, "--dns-server", dns.address)
        _, port = servers.edge(address, tmp_path)
        with RawClient(port) as client:
            client.reply()
            client.command(b"EHLO client.test")
            client.command(b"MAIL FROM:<alice@example.com>")
            client.command(b"RCPT TO:<bob@example.net>")
            client.command(b"DATA")
            client.send(sign(MESSAGE, "rsa") + b".\r\n")
            assert client.reply().startswith(b"250 OK ids=")
        (stored,) = read_maildir(tmp_path / "mail")
        assert stored.message.startswith(
            b"Authentication-Results: mx.test;\r\n\tdkim=pass\r\n\theader.a=rsa-sha256\r\n"
        )
    finally:
        dns.proc.stop()
