"""msg:dkim_sign: a DKIM-Signature (RFC 6376; rsa-sha256, and ed25519-sha256
per RFC 8463) with KumoMTA's signer parameters: headers (over-signed on
request), canonicalization, expiration, body length, agent identifier.

Our own, on `cryptography`: dkimpy, which verifies, cannot set x= when it
signs; the tests check these signatures with dkimpy. The field is laid out
and folded before it is hashed, so simple canonicalization holds too. Pure.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
FOLD = b"\r\n\t"


@dataclass(frozen=True)
class Signer:
    domain: str
    selector: str
    headers: tuple[str, ...]
    key: PrivateKey
    header_canon: str = "relaxed"
    body_canon: str = "relaxed"
    expiration: int | None = None  # seconds from signing
    body_length: bool = False
    over_sign: bool = False
    auid: str | None = None

    @property
    def algorithm(self) -> str:
        return "ed25519-sha256" if isinstance(self.key, ed25519.Ed25519PrivateKey) else "rsa-sha256"


def _fields(head: bytes) -> list[tuple[bytes, bytes]]:
    """(name, raw value after the colon) of each header field, folds kept."""
    out: list[tuple[bytes, bytes]] = []
    for line in re.split(rb"\r\n(?![ \t])", head):
        if line:
            name, _, value = line.partition(b":")
            out.append((name, value))
    return out


def header_canon(name: bytes, value: bytes, canon: str) -> bytes:
    if canon == "simple":
        return name + b":" + value
    value = re.sub(rb"\r\n(?=[ \t])", b"", value)
    value = re.sub(rb"[ \t]+", b" ", value).strip(b" ")
    return name.strip().lower() + b":" + value


def body_canon(body: bytes, canon: str) -> bytes:
    if canon == "relaxed":
        body = b"\r\n".join(
            re.sub(rb"[ \t]+", b" ", line).rstrip(b" ") for line in body.split(b"\r\n")
        )
    body = body.rstrip(b"\r\n")
    if body:
        return body + b"\r\n"
    return b"\r\n" if canon == "simple" else b""


def _chosen(signer: Signer, fields: list[tuple[bytes, bytes]]) -> list[str]:
    """h=: the names to sign, each once per instance and once more when
    over-signing (so no instance can be added without breaking it)."""
    if not signer.over_sign:
        return list(signer.headers)
    out = []
    for name in signer.headers:
        count = sum(1 for n, _ in fields if n.strip().lower() == name.lower().encode())
        out += [name] * (count + 1)
    return out


def _signed_headers(names: list[str], fields: list[tuple[bytes, bytes]], canon: str) -> bytes:
    """The fields h= names, bottom-up for repeated names (RFC 6376 5.4.2)."""
    used: dict[str, int] = {}
    out = b""
    for name in names:
        key = name.lower()
        instances = [f for f in fields if f[0].strip().lower() == key.encode()]
        n = used.get(key, 0)
        used[key] = n + 1
        if n < len(instances):
            out += header_canon(*instances[-1 - n], canon) + b"\r\n"
    return out


def sign(message: bytes, signer: Signer, now: float | None = None) -> str:
    """The DKIM-Signature field's value (folded) for `message` (CRLF lines)."""
    head, sep, body = message.partition(b"\r\n\r\n")
    if not sep:
        head, body = message.removesuffix(b"\r\n"), b""
    fields = _fields(head)
    canonical_body = body_canon(body, signer.body_canon)
    stamp = int(time.time() if now is None else now)
    names = _chosen(signer, fields)
    tags = [
        f"v=1; a={signer.algorithm}; c={signer.header_canon}/{signer.body_canon};",
        f"d={signer.domain}; s={signer.selector}; t={stamp};",
    ]
    if signer.expiration is not None:
        tags.append(f"x={stamp + signer.expiration};")
    if signer.auid is not None:
        tags.append(f"i={signer.auid};")
    if signer.body_length:
        tags.append(f"l={len(canonical_body)};")
    tags.append(f"h={':'.join(names)};")
    digest = base64.b64encode(hashlib.sha256(canonical_body).digest()).decode()
    tags += [f"bh={digest};", "b="]
    value = b" " + FOLD.join(t.encode() for t in tags)
    data = _signed_headers(names, fields, signer.header_canon)
    data += header_canon(b"DKIM-Signature", value, signer.header_canon)
    if isinstance(signer.key, ed25519.Ed25519PrivateKey):
        raw = signer.key.sign(hashlib.sha256(data).digest())
    else:
        raw = signer.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    b = base64.b64encode(raw)
    chunks = [b[i : i + 72] for i in range(0, len(b), 72)]
    return (value + FOLD.join(chunks)).decode("ascii").removeprefix(" ")
