"""msg:dkim_verify: each DKIM-Signature (RFC 6376; rsa-sha256, and ed25519-sha256
per RFC 8463) of a message, verified by dkimpy, as KumoMTA's results.

dkimpy asks DNS synchronously, so the keys are fetched first, through the
daemon's asynchronous, cached resolver within the evaluation's deadline, and
dkimpy is handed them from memory; the hashing runs in a worker thread, so a
large body holds up no other evaluation. Results: pass; fail when the body
hash or the signature does not verify (RFC 8601's word for it); permerror for
a broken signature or key, an expired signature, no key; temperror when the
key could not be looked up.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

from policyd.dns.records import DnsError, query_name
from policyd.mailauth.spf import Resolver

MAX_SIGNATURES = 10  # as KumoMTA: a message full of signatures costs no more
_PROPS = {b"d": "header.d", b"a": "header.a", b"s": "header.s", b"c": "header.c",
          b"t": "header.t", b"x": "header.x"}  # fmt: skip


def _signatures(data: bytes) -> list[bytes]:
    """The values of the top-level DKIM-Signature fields, unfolded as dkimpy reads them."""
    message = dkim.DKIM(data)
    return [v for k, v in message.headers if k.lower() == b"dkim-signature"][:MAX_SIGNATURES]


def tags_of(value: bytes) -> dict[bytes, bytes]:
    try:
        return dict(parse_tag_value(value))
    except InvalidTagValueList:
        return {}


def _props(tags: dict[bytes, bytes]) -> dict[str, str]:
    props = {
        name: tags[tag].decode("utf-8", "replace") for tag, name in _PROPS.items() if tag in tags
    }
    if "header.d" in props:
        props["header.i"] = "@" + props["header.d"]
    return props


def _short_b(b: bytes, others: list[bytes]) -> str:
    """At least 8 characters of b=, enough to tell it from the others (RFC 6008)."""
    text, length = b.decode("ascii", "replace").replace(" ", ""), 8
    rest = [o.decode("ascii", "replace").replace(" ", "") for o in others if o != b]
    while length < len(text) and any(o[:length] == text[:length] for o in rest):
        length += 2
    return text[:length]


class _Errors(logging.Handler):
    """What dkimpy logs as an error while verifying (it reports key problems so)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(record.getMessage())


def _verify(data: bytes, index: int, keys: dict[bytes, bytes | None]) -> tuple[str, str | None]:
    """(result, reason) of one signature, with its key given."""
    errors = _Errors()
    logger = logging.Logger("policyd.dkim")  # not registered: one per verification
    logger.addHandler(errors)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return keys.get(name.rstrip(b".").lower())

    try:
        ok = dkim.DKIM(data, logger=logger, minkey=1024).verify(idx=index, dnsfunc=dnsfunc)
    except dkim.ValidationError as e:
        text = str(e)
        return ("fail" if text.startswith("body hash mismatch") else "permerror"), text
    except (dkim.DKIMException, ValueError, KeyError) as e:
        return "permerror", str(e) or type(e).__name__
    if ok:
        return "pass", None
    if errors.texts:
        return "permerror", errors.texts[-1]
    return "fail", "signature did not verify"


async def _key(dns: Resolver, name: str) -> bytes | DnsError | None:
    try:
        records = await dns.records(query_name(name), "TXT")
    except DnsError as e:
        return e
    return " ".join(str(v) for v in records.values).encode() if records.values else None


async def fetch_keys(
    dns: Resolver, tags: list[dict[bytes, bytes]]
) -> tuple[dict[bytes, bytes | None], dict[str, DnsError]]:
    """The keys (s=, d=) the signatures name, by query name (None: no key), and
    the lookups that failed, by name."""
    names = {f"{t[b's'].decode()}._domainkey.{t[b'd'].decode()}".lower()
             for t in tags if b"s" in t and b"d" in t}  # fmt: skip
    fetched = dict(zip(names, await asyncio.gather(*(_key(dns, n) for n in names)), strict=True))
    keys = {n.encode(): k for n, k in fetched.items() if not isinstance(k, DnsError)}
    return keys, {n: k for n, k in fetched.items() if isinstance(k, DnsError)}


async def verify(dns: Resolver, data: bytes) -> list[dict[str, Any]]:
    """KumoMTA's AuthenticationResult for each signature (at most 10)."""
    values = await asyncio.to_thread(_signatures, data)
    tags = [tags_of(v) for v in values]
    keys, failures = await fetch_keys(dns, tags)
    results = []
    for index, t in enumerate(tags):
        props = _props(t)
        if b"b" in t:
            props["header.b"] = _short_b(t[b"b"], [o.get(b"b", b"") for o in tags])
        name = f"{props.get('header.s', '')}._domainkey.{props.get('header.d', '')}".lower()
        failed = failures.get(name)
        result: str
        reason: str | None
        if isinstance(failed, DnsError):
            result, reason = "temperror", f"key unavailable: {failed}"
        else:
            result, reason = await asyncio.to_thread(_verify, data, index, keys)
        results.append({"method": "dkim", "result": result, "reason": reason, "props": props})
    return results
