"""kumo.string: KumoMTA's string functions, with Rust's meaning of each.

Patterns are plain text, never regular expressions, and every function runs in
time linear in its input. Rust's details that differ from Python's: an empty
pattern splits before and after every character (`split('ab', '')` is
`{'', 'a', 'b', ''}`); `rsplit` and `rsplitn` list the pieces from the end;
"whitespace" is Unicode's White_Space property (not Python's `isspace`, which
adds U+001C..U+001F), and ASCII whitespace is space, tab, LF, FF and CR.
"""

from __future__ import annotations

import re
from typing import Any

from policyd.extensions import Context, HostFunctions, from_binary

MAX_OUTPUT = 64 * 1024 * 1024  # characters a replacement may produce

WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
ASCII_WHITE_SPACE = " \t\n\x0c\r"
_WORDS = re.compile(f"[^{re.escape(WHITE_SPACE)}]+")
_ASCII_WORDS = re.compile(f"[^{re.escape(ASCII_WHITE_SPACE)}]+")
_ASCII_WORD_BYTES = re.compile(rb"[^ \t\n\x0c\r]+")


def _around_each_char(text: str) -> list[str]:
    """What splitting by an empty pattern gives in Rust."""
    return ["", *text, ""]


def _first(pieces: list[str], limit: int, backwards: bool = False) -> list[str]:
    """At most `limit` pieces, the rest joined into the last one (in text
    order, so backwards when the pieces are listed from the end)."""
    if limit >= len(pieces):
        return pieces
    rest = pieces[limit - 1 :]
    return [*pieces[: limit - 1], "".join(rest[::-1] if backwards else rest)]


def split(text: str, pattern: str) -> list[str]:
    return text.split(pattern) if pattern else _around_each_char(text)


def splitn(text: str, limit: int, pattern: str) -> list[str]:
    if limit == 0:
        return []
    if not pattern:
        return _first(_around_each_char(text), limit)
    return text.split(pattern, limit - 1)


def rsplit(text: str, pattern: str) -> list[str]:
    if not pattern:
        return _around_each_char(text)[::-1]
    return text.rsplit(pattern)[::-1]


def rsplitn(text: str, limit: int, pattern: str) -> list[str]:
    if limit == 0:
        return []
    if not pattern:
        return _first(_around_each_char(text)[::-1], limit, backwards=True)
    return text.rsplit(pattern, limit - 1)[::-1]


def replacen(text: str, old: str, new: str, count: int) -> str:
    """`text` with the first `count` matches of `old` replaced (-1: all)."""
    matches = text.count(old) if old else len(text) + 1
    if count >= 0:
        matches = min(matches, count)
    if len(text) + matches * (len(new) - len(old)) > MAX_OUTPUT:
        raise ValueError(f"the result would be longer than {MAX_OUTPUT} characters")
    return text.replace(old, new, count)


def wrap(data: bytes, soft: int, hard: int) -> bytes:
    """Words (split at ASCII whitespace) filled into lines below `soft` bytes,
    a word longer than `hard` broken every `hard` bytes; lines joined by
    CR LF TAB, trailing whitespace trimmed."""
    out: list[bytes] = []
    line = bytearray()

    def flush() -> None:
        out.append(bytes(line))
        line.clear()

    for word in _ASCII_WORD_BYTES.findall(data):
        if len(line) + len(word) < soft:
            line += (b" " if line else b"") + word
            continue
        if line:
            flush()
        if len(word) <= hard:
            line += word
            continue
        for i in range(len(word)):
            line.append(word[i])
            if len(line) >= hard:
                flush()
    if line:
        flush()
    text = b"\r\n\t".join(out).decode("utf-8", "surrogateescape")
    return text.rstrip(WHITE_SPACE).encode("utf-8", "surrogateescape")


def functions(context: Context) -> HostFunctions:
    table = context.lua.table_from

    def guarded(fn: Any) -> Any:
        def run(*args: Any) -> tuple[Any, str | None]:
            try:
                result = fn(*args)
            except ValueError as e:
                return None, str(e)
            return (table(result) if isinstance(result, list) else result), None

        return run

    return {
        name: guarded(fn)
        for name, fn in {
            "split": split,
            "splitn": splitn,
            "rsplit": rsplit,
            "rsplitn": rsplitn,
            "replacen": replacen,
            "split_whitespace": _WORDS.findall,
            "split_ascii_whitespace": _ASCII_WORDS.findall,
            "trim": lambda s: s.strip(WHITE_SPACE),
            "trim_start": lambda s: s.lstrip(WHITE_SPACE),
            "trim_end": lambda s: s.rstrip(WHITE_SPACE),
            "wrap": lambda s, soft, hard: wrap(from_binary(s), soft, hard),
        }.items()
    }
