"""kumo.digest: SHA-1, SHA-2, SHA-3 and CRC32 digests and HMACs, with the
result KumoMTA returns: the digest bytes in every encoding it offers.

A digest covers its arguments in order: strings as their bytes, any other
value (table, number, boolean, nil) as its compact JSON text, as kumo.serde
writes it. An HMAC's key is a KumoMTA KeySource: `{key_data = 'bytes'}`, or a
path, read from the policy directory (a key file becomes part of the revision
like any data file); vault sources are refused.
"""

from __future__ import annotations

import hashlib
import hmac
import zlib
from collections.abc import Callable
from typing import Any

from policyd.extensions import Context, HostFunctions, from_binary
from policyd.extensions.encode import ALPHABETS, encode
from policyd.extensions.serde import dump_json, from_lua
from policyd.source import PolicyError

HMACS = ("sha1", "sha224", "sha256", "sha384", "sha512")

Result = tuple[Any, str | None]


def encodings(data: bytes) -> dict[str, str | bytes]:
    """The fields of KumoMTA's BinaryResult."""
    out: dict[str, str | bytes] = {"bytes": data, "hex": data.hex()}
    for name in ("base32", "base32hex", "base64", "base64url"):
        out[name] = encode(ALPHABETS[name], True, data)
        out[f"{name}_nopad"] = encode(ALPHABETS[name], False, data)
    return out


def _part(value: Any) -> bytes:
    if isinstance(value, str):
        return from_binary(value)
    return dump_json(from_lua(value)).encode("utf-8")


def key_bytes(context: Context, kind: str, key: str) -> bytes:
    """A KeySource's bytes (ext/digest.lua's key_source): a policy file, or
    the data itself; PolicyError when the file cannot be had."""
    return context.key_file(key) if kind == "path" else from_binary(key)


def functions(context: Context) -> HostFunctions:
    table = context.lua.table_from

    def digest(name: str, parts: Any, count: int) -> Result:
        values = dict(parts.items())
        try:
            data = [_part(values.get(i)) for i in range(1, count + 1)]
        except ValueError as e:
            return None, str(e)
        if name == "crc32":
            crc = 0
            for piece in data:
                crc = zlib.crc32(piece, crc)
            return table(encodings(crc.to_bytes(4, "big"))), None
        hasher = hashlib.new(name)
        for piece in data:
            hasher.update(piece)
        return table(encodings(hasher.digest())), None

    def sign(name: str) -> Callable[[str, str, str], Result]:
        """HMAC with a key given as `data` (binary) or as the `path` of a file."""

        def run(kind: str, key: str, message: str) -> Result:
            try:
                secret = key_bytes(context, kind, key)
            except PolicyError as e:
                return None, str(e)
            mac = hmac.new(secret, from_binary(message), name).digest()
            return table(encodings(mac)), None

        return run

    def rebuild(data: str) -> Any:
        return table(encodings(from_binary(data)))

    out: dict[str, Callable[..., Any]] = {"digest": digest, "rebuild": rebuild}
    out.update({f"hmac_{name}": sign(name) for name in HMACS})
    return out
