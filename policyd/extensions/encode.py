"""kumo.encode: base32, base32hex, base64, base64url (each with and without
padding) and lowercase hex, both ways, on arbitrary bytes; charset_encode and
charset_decode between UTF-8 and the common legacy character sets.

Decoding is as strict as KumoMTA's (the data-encoding crate): only the
alphabet's own symbols (hex in lowercase, base32 in uppercase), a length that
some input could have, and unused trailing bits all zero; KumoMTA's one
leniency is kept: the padded variants accept any number of trailing `=`,
including none.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from policyd.extensions import Context, HostFunctions, from_binary


@dataclass(frozen=True)
class Alphabet:
    name: str
    symbols: bytes
    encode: Callable[[bytes], bytes]
    decode: Callable[[bytes], bytes]
    block: int  # characters per padded group
    bad_lengths: frozenset[int]  # unpadded lengths mod block that no input has


_B32 = string.ascii_uppercase + "234567"
_B32HEX = string.digits + "ABCDEFGHIJKLMNOPQRSTUV"
_B64 = string.ascii_uppercase + string.ascii_lowercase + string.digits
ALPHABETS = {
    a.name: a
    for a in (
        Alphabet(
            "base32", _B32.encode(), base64.b32encode, base64.b32decode, 8, frozenset({1, 3, 6})
        ),
        Alphabet(
            "base32hex",
            _B32HEX.encode(),
            base64.b32hexencode,
            base64.b32hexdecode,
            8,
            frozenset({1, 3, 6}),
        ),
        Alphabet(
            "base64",
            (_B64 + "+/").encode(),
            base64.b64encode,
            lambda d: base64.b64decode(d, validate=True),
            4,
            frozenset({1}),
        ),
        Alphabet(
            "base64url",
            (_B64 + "-_").encode(),
            base64.urlsafe_b64encode,
            lambda d: base64.b64decode(d, altchars=b"-_", validate=True),
            4,
            frozenset({1}),
        ),
        Alphabet(
            "hex", b"0123456789abcdef", binascii.hexlify, binascii.unhexlify, 2, frozenset({1})
        ),
    )
}


def encode(alphabet: Alphabet, padded: bool, data: bytes) -> str:
    text = alphabet.encode(data).decode("ascii")
    return text if padded else text.rstrip("=")


def decode(alphabet: Alphabet, padded: bool, data: bytes) -> bytes:
    """The bytes `data` encodes; ValueError saying where it is not valid."""
    if padded:
        data = data.rstrip(b"=")
    symbols = alphabet.symbols
    for i, byte in enumerate(data):
        if byte not in symbols:
            raise ValueError(f"invalid symbol at {i}")
    if len(data) % alphabet.block in alphabet.bad_lengths:
        raise ValueError(f"invalid length at {len(data) - len(data) % alphabet.block}")
    padding = b"=" * (-len(data) % alphabet.block) if alphabet.block > 2 else b""
    out = alphabet.decode(data + padding)
    if encode(alphabet, False, out).encode("ascii") != data:
        raise ValueError(f"non-zero trailing bits at {len(data) - 1}")
    return out


# Character sets by their WHATWG names (as KumoMTA's converter knows them),
# each as Python's codec of the same table.
_CHARSETS = {
    "utf-8": "utf-8",
    "utf-16le": "utf-16-le",
    "utf-16be": "utf-16-be",
    "us-ascii": "ascii",
    "iso-8859-1": "latin-1",
    **{f"iso-8859-{n}": f"iso8859-{n}" for n in (2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 15, 16)},
    **{f"windows-{n}": f"cp{n}" for n in (874, *range(1250, 1259))},
    "ibm866": "cp866",
    "koi8-r": "koi8-r",
    "koi8-u": "koi8-u",
    "macintosh": "mac-roman",
    "x-mac-cyrillic": "mac-cyrillic",
    "shift_jis": "cp932",
    "euc-jp": "euc-jp",
    "iso-2022-jp": "iso2022-jp",
    "gbk": "gbk",
    "gb18030": "gb18030",
    "big5": "big5hkscs",
    "euc-kr": "cp949",
}
_ALIASES = re.compile(r"[\s_]+")


def codec(charset: str) -> str:
    name = _CHARSETS.get(charset.strip().lower()) or _CHARSETS.get(
        _ALIASES.sub("-", charset.strip().lower())
    )
    if name is None:
        raise ValueError(f"unknown charset {charset}")
    return codecs.lookup(name).name


def functions(context: Context) -> HostFunctions:
    out: dict[str, Callable[..., Any]] = {}
    for alphabet in ALPHABETS.values():
        for padded in (True, False) if alphabet.name != "hex" else (True,):
            name = alphabet.name + ("" if padded or alphabet.name == "hex" else "_nopad")
            out[f"{name}_encode"] = _encoder(alphabet, padded)
            out[f"{name}_decode"] = _decoder(alphabet, padded)
    out["charset_decode"] = charset_decode
    out["charset_encode"] = charset_encode
    return out


def _encoder(alphabet: Alphabet, padded: bool) -> Callable[[str], str]:
    return lambda text: encode(alphabet, padded, from_binary(text))


def _decoder(alphabet: Alphabet, padded: bool) -> Callable[[str], tuple[bytes | None, str | None]]:
    def run(text: str) -> tuple[bytes | None, str | None]:
        try:
            return decode(alphabet, padded, from_binary(text)), None
        except ValueError as e:
            return None, str(e)

    return run


def charset_decode(charset: str, text: str) -> tuple[str | None, str | None]:
    try:
        return from_binary(text).decode(codec(charset)), None
    except UnicodeDecodeError as e:
        return None, f"input string did not decode from {charset} bytes: {e.reason} at {e.start}"
    except ValueError as e:
        return None, str(e)


def charset_encode(charset: str, text: str, ignore: bool) -> tuple[bytes | None, str | None]:
    try:
        return text.encode(codec(charset), "ignore" if ignore else "strict"), None
    except UnicodeEncodeError as e:
        return None, f"input string did not encode into {charset} bytes: {e.reason} at {e.start}"
    except ValueError as e:
        return None, str(e)
