"""msg:arc_verify: the Authenticated Received Chain (RFC 8617) of a message,
validated by dkimpy, as KumoMTA's AuthenticationResult (`none`, `pass`, or
`fail` with the first reason). The keys of every ARC-Seal and
ARC-Message-Signature are fetched first through the daemon's resolver, then
dkimpy validates in a worker thread from memory, as for DKIM (dkim.py)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from policyd.mailauth.dkim import fetch_keys, tags_of
from policyd.mailauth.dkim_sign import Signer
from policyd.mailauth.results import header_value
from policyd.mailauth.spf import Resolver

_ARC_FIELDS = (b"arc-seal", b"arc-message-signature")


def _arc_tags(data: bytes) -> list[dict[bytes, bytes]]:
    message = dkim.DKIM(data)
    return [tags_of(v) for k, v in message.headers if k.lower() in _ARC_FIELDS]


def _validate(data: bytes, keys: dict[bytes, bytes | None]) -> tuple[str, str | None]:
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return keys.get(name.rstrip(b".").lower())

    logger = logging.Logger("policyd.arc")  # not registered: one per validation
    try:
        cv, _, comment = dkim.arc_verify(data, logger=logger, dnsfunc=dnsfunc)
    except (dkim.DKIMException, ValueError, KeyError) as e:
        return "fail", str(e) or type(e).__name__
    status = cv.decode() if isinstance(cv, bytes) else str(cv)
    return status, (None if status in ("pass", "none") else comment or "the chain did not validate")


async def verify(dns: Resolver, data: bytes) -> dict[str, Any]:
    tags = await asyncio.to_thread(_arc_tags, data)
    if not tags:
        return {"method": "arc", "result": "none", "reason": None, "props": {}}
    keys, failures = await fetch_keys(dns, tags)
    if failures:
        unavailable = f"key unavailable: {next(iter(failures.values()))}"
        return {"method": "arc", "result": "fail", "reason": unavailable, "props": {}}
    validated: tuple[str, str | None] = await asyncio.to_thread(_validate, data, keys)
    result, reason = validated
    return {"method": "arc", "result": result, "reason": reason, "props": {}}


def seal(data: bytes, signer: Signer, serv_id: Any, results: Any) -> list[tuple[str, str]]:
    """msg:arc_seal's ARC set for this hop, by dkimpy's sealer: it takes the
    chain's status from the arc= result among `results` (msg:arc_verify's,
    which the caller adds), so it needs no DNS. RSA signers only (dkimpy's
    sealer reads keys as PEM RSA); ValueError for anything it refuses."""
    if not isinstance(signer.key, rsa.RSAPrivateKey):
        raise ValueError("ARC sealing takes an rsa_sha256_signer here")
    pem = signer.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    ar = b"Authentication-Results: " + header_value(serv_id, results).encode() + b"\r\n"
    headers = [h.lower().encode() for h in signer.headers]
    try:
        lines = dkim.arc_sign(
            ar + data, signer.selector.encode(), signer.domain.encode(), pem,
            str(serv_id).encode(), include_headers=headers,
        )  # fmt: skip
    except dkim.DKIMException as e:
        raise ValueError(f"ARC sealing failed: {e}") from None
    pairs = []
    for line in lines:
        name, _, value = line.decode().partition(":")
        pairs.append((name, value.strip(" ").removesuffix("\r\n")))
    return pairs
