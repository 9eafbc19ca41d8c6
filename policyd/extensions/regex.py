"""kumo.regex: KumoMTA's regular expressions on RE2, a linear-time engine.

KumoMTA compiles patterns with fancy-regex, which runs plain patterns on
Rust's linear-time regex crate and falls back to backtracking for look-around
and backreferences. Here every pattern runs on RE2, so no pattern can take
more than linear time per search, and the backtracking features are refused
when the pattern is compiled, with the reason and the pattern.

`translate` rewrites KumoMTA's syntax into RE2's where the two differ:
`\\d`, `\\s`, `\\w` match Unicode digits, white space and word characters as in
Rust (RE2's are ASCII); `\\h`, `\\e`, `\\O`, `\\u....`, `\\U........`, `(?'name'...)`,
`{,n}`, `(?u)` and `(?#comments)` mean what they mean in KumoMTA. Left as
RE2 has them: `\\b` and `\\B` see ASCII word characters only, as do `\\S` and
`\\W` inside a bracketed class (`[^\\S\\n]`); Unicode property names RE2 does not
know (`\\p{Alphabetic}`) are compile errors.

Searches work on the UTF-8 bytes and return byte strings, so what reaches Lua
is exactly the matched bytes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import re2

from policyd.extensions import Context, HostFunctions

# A match as google-re2 returns it: span(group) is (-1, -1) for a group that
# took no part, string is the subject.
Found = Any

MAX_PATTERN = 64 * 1024  # bytes of pattern text; RE2 bounds the compiled size itself
OUTSIDE_EVALUATION = 5.0  # seconds an iteration may take when no evaluation bounds it

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False

_LINEAR = "patterns run on a linear-time engine here"
# Rust's Unicode classes as RE2 class items (\w: Alphabetic, marks, digits,
# connector punctuation, join controls; \s: White_Space).
_ITEMS = {
    "d": r"\p{Nd}",
    "s": r"\t-\r\x{20}\x{85}\p{Z}",
    "w": r"\p{L}\p{Nl}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}\x{24B6}-\x{24E9}"
    r"\x{1F130}-\x{1F149}\x{1F150}-\x{1F169}\x{1F170}-\x{1F189}",
    "h": "0-9A-Fa-f",
}
_PASSED = {"a", "f", "n", "r", "t", "v"}  # escapes both engines read alike
_HEX_DIGITS = {"x": 2, "u": 4, "U": 8}
_META = set("\\.+*?()|[]{}^$#&-~")


class Refused(ValueError):
    """A pattern this service cannot run as KumoMTA would."""


def _literal(char: str) -> str:
    return f"\\x{{{ord(char):X}}}"


def _hex(p: str, i: int, digits: int) -> tuple[str, int]:
    """The code point of a \\x, \\u or \\U escape whose digits start at i."""
    fixed = p[i : i + digits]
    if len(fixed) == digits and all(c in "0123456789abcdefABCDEF" for c in fixed):
        text, end = fixed, i + digits
    elif p[i : i + 1] == "{" and (close := p.find("}", i)) > i + 1:
        text, end = p[i + 1 : close], close + 1
        if len(text) > 8 or not all(c in "0123456789abcdefABCDEF" for c in text):
            raise Refused("invalid hexadecimal escape")
    else:
        raise Refused("invalid hexadecimal escape")
    code = int(text, 16)
    if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        raise Refused(f"\\x{{{text}}} is not a Unicode scalar value")
    return _literal(chr(code)), end


def _class_escape(c: str, in_class: bool) -> str:
    """\\d \\s \\w \\h and their negations, with Rust's meaning."""
    items = _ITEMS[c.lower()]
    if not in_class:
        return f"[{items}]" if c.islower() else f"[^{items}]"
    if c.islower():
        return items
    if c == "D":
        return r"\P{Nd}"
    if c == "H":
        raise Refused("\\H inside a character class is not supported")
    return "\\" + c  # \S, \W: RE2's ASCII classes


_OUTSIDE = {"A": r"\A", "z": r"\z", "O": r"(?s:.)"}  # escapes outside a class only
_REFUSED_ESCAPES = {
    "<": "\\< and \\> (start and end of a word) are not supported; use \\b",
    ">": "\\< and \\> (start and end of a word) are not supported; use \\b",
    "Z": f"\\Z is a look-ahead, which is not supported ({_LINEAR}); use \\z",
    "K": "\\K is not supported",
    "G": "\\G is not supported",
    "k": f"backreferences are not supported ({_LINEAR})",
    "g": f"subroutine calls are not supported ({_LINEAR})",
}


def _escape(p: str, i: int, in_class: bool) -> tuple[str, int]:
    """One escape starting at p[i] == '\\' as RE2 text, and where it ends."""
    if i + 1 >= len(p):
        raise Refused("the pattern ends with a lone backslash")
    c, end = p[i + 1], i + 2
    if "0" <= c <= "9":
        raise Refused(f"backreferences such as \\{c} are not supported ({_LINEAR})")
    if c.lower() in _ITEMS:
        return _class_escape(c, in_class), end
    if c in _HEX_DIGITS:
        return _hex(p, end, _HEX_DIGITS[c])
    if c in "pP":
        close = p.find("}", end) + 1 if p[end : end + 1] == "{" else end + 1
        if close <= end:
            raise Refused(f"\\{c}{{ is not closed")
        return p[i:close], close
    if c in _PASSED:
        return "\\" + c, end
    if c == "e":
        return _literal("\x1b"), end
    if c in "bB":
        if in_class:
            return (_literal("\b"), end) if c == "b" else (_literal("B"), end)
        if p[end : end + 1] == "{":
            raise Refused(f"\\{c}{{...}} word boundaries are not supported")
        return "\\" + c, end
    if not in_class and c in _REFUSED_ESCAPES:
        raise Refused(_REFUSED_ESCAPES[c])
    if not in_class and c in _OUTSIDE:
        return _OUTSIDE[c], end
    if c.isascii() and c.isalpha() and not (in_class and c in "AzkKG"):
        raise Refused(f"\\{c} is not a valid escape")
    return _literal(c), end


def _char_class(p: str, i: int) -> tuple[str, int]:
    """A bracketed class starting at p[i] == '[' as RE2 text, and where it ends."""
    out, j = ["["], i + 1
    if p[j : j + 1] == "^":
        out.append("^")
        j += 1
    if p[j : j + 1] == "]":
        out.append(_literal("]"))
        j += 1
    while j < len(p):
        c = p[j]
        if c == "]":
            out.append("]")
            return "".join(out), j + 1
        if c == "\\":
            piece, j = _escape(p, j, in_class=True)
        elif c == "[":
            close = p.find(":]", j + 2) if p.startswith("[:", j) else -1
            if close < 0:
                raise Refused("nested character classes such as [a[bc]] are not supported")
            piece, j = p[j : close + 2], close + 2
        elif p.startswith(("&&", "--", "~~"), j):
            raise Refused(f"character class set operations ({p[j : j + 2]}) are not supported")
        else:
            piece, j = c, j + 1
        out.append(piece)
    raise Refused("a character class is not closed with ]")


_GROUP_REFUSALS = (
    ("?=", f"look-around assertions such as (?=...) are not supported ({_LINEAR})"),
    ("?!", f"look-around assertions such as (?!...) are not supported ({_LINEAR})"),
    ("?<=", f"look-around assertions such as (?<=...) are not supported ({_LINEAR})"),
    ("?<!", f"look-around assertions such as (?<!...) are not supported ({_LINEAR})"),
    ("?P=", f"backreferences are not supported ({_LINEAR})"),
    ("?P>", f"subroutine calls are not supported ({_LINEAR})"),
    ("?>", f"atomic groups (?>...) are not supported ({_LINEAR})"),
    ("?(", f"conditionals (?(...)...) are not supported ({_LINEAR})"),
)


def _flags(p: str, i: int) -> tuple[str, int]:
    """A flag group `(?flags)` or `(?flags:` at p[i] == '(' as RE2 text."""
    j = i + 2
    while j < len(p) and p[j] not in ":)":
        j += 1
    flags = p[i + 2 : j]
    if "x" in flags:
        raise Refused("the x (verbose) flag is not supported")
    if "-" in flags and "u" in flags.split("-", 1)[1]:
        raise Refused("turning off Unicode mode (?-u) is not supported")
    kept = flags.replace("u", "")
    close = p[j : j + 1]
    if kept in ("", "-") and flags != kept:
        return ("(?:" if close == ":" else ""), j + 1
    return f"(?{kept}{close}", j + 1


def _group(p: str, i: int) -> tuple[str, int]:
    """The opening of a group at p[i] == '(' as RE2 text, and where it ends."""
    rest = p[i + 1 : i + 4]
    for prefix, reason in _GROUP_REFUSALS:
        if rest.startswith(prefix):
            raise Refused(reason)
    for opener, close in (("?P<", ">"), ("?<", ">"), ("?'", "'")):
        if rest.startswith(opener):
            start = i + 1 + len(opener)
            end = p.find(close, start)
            if end < 0:
                raise Refused("a group name is not closed")
            return f"(?P<{p[start:end]}>", end + 1
    if rest.startswith("?"):
        return _flags(p, i)
    return "(", i + 1


def _repeat(p: str, i: int) -> tuple[str, int] | None:
    """A counted repetition `{n}`, `{n,}`, `{n,m}`, `{,m}` at p[i], or None
    when the brace is a literal (as in KumoMTA)."""
    close = p.find("}", i)
    if close < 0:
        return None
    lo, comma, hi = p[i + 1 : close].partition(",")
    if not (lo.isdecimal() or (comma and not lo)) or not (hi.isdecimal() or not hi):
        return None
    if not lo.isascii() or not hi.isascii():
        return None
    return "{" + (lo or "0") + comma + hi + "}", close + 1


def _quantifier(p: str, found: tuple[str, int]) -> tuple[str, int]:
    """A quantifier (`found`: its text and end) with its lazy `?`, refusing a
    possessive `+` after it."""
    piece, i = found
    if p[i : i + 1] == "?":
        piece, i = piece + "?", i + 1
    if p[i : i + 1] == "+":
        raise Refused(f"possessive repetitions such as a++ are not supported ({_LINEAR})")
    return piece, i


def _comment_end(p: str, i: int) -> int:
    """Where a (?#...) comment starting at p[i] ends."""
    j = i + 3
    while j < len(p):
        if p[j] == "\\":
            j += 2
        elif p[j] == ")":
            return j + 1
        else:
            j += 1
    raise Refused("a (?# comment is not closed")


def translate(pattern: str) -> str:
    """KumoMTA's pattern as RE2 text; Refused names what cannot be run."""
    out: list[str] = []
    i, atom = 0, False  # atom: the last token can take a quantifier
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            piece, i = _escape(pattern, i, in_class=False)
            atom = True
        elif c == "[":
            piece, i = _char_class(pattern, i)
            atom = True
        elif pattern.startswith("(?#", i):
            piece, i = "", _comment_end(pattern, i)
        elif c == "(":
            piece, i = _group(pattern, i)
            atom = False
        elif c == "|":
            piece, i, atom = c, i + 1, False
        elif c in "*+?":
            piece, i = _quantifier(pattern, (c, i + 1))
            atom = False
        elif c == "{":
            counted = _repeat(pattern, i) if atom else None
            if counted:
                piece, i = _quantifier(pattern, counted)
            else:  # a brace that starts no repetition is itself, as in KumoMTA
                piece, i = _literal(c), i + 1
            atom = not counted
        else:
            piece, i, atom = c, i + 1, True
        out.append(piece)
    return "".join(out)


@dataclass(frozen=True)
class Compiled:
    """A compiled pattern and its group names by number."""

    regex: Any  # the module's compiled pattern (google-re2 ships no stubs)
    groups: int
    names: dict[int, str]

    def search(self, data: bytes, pos: int = 0) -> Found | None:
        """The leftmost match at or after `pos` (with `data` before it as
        context, for ^ and \\b)."""
        found: Found | None = self.regex.search(data, pos)
        return found

    def group_of(self, name: str) -> int:
        """The group a replacement's `$name` refers to (-1 for none)."""
        for index, known in self.names.items():
            if known == name:
                return index
        return int(name) if name.isdecimal() and name.isascii() else -1


def compile_pattern(pattern: str) -> Compiled:
    """The pattern compiled for RE2; ValueError with the reason otherwise."""
    if len(pattern.encode("utf-8")) > MAX_PATTERN:
        raise ValueError(f"the pattern is longer than {MAX_PATTERN} bytes")
    try:
        regex = re2.compile(translate(pattern).encode("utf-8"), _OPTIONS)
    except re2.error as e:
        reason = e.args[0] if e.args else "invalid pattern"
        text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        raise ValueError(text) from None
    names = {index: name.decode("utf-8") for name, index in regex.groupindex.items()}
    return Compiled(regex, regex.groups, names)


def _next_char(data: bytes, i: int) -> int:
    """The offset after the UTF-8 character at i."""
    i += 1
    while i < len(data) and 0x80 <= data[i] < 0xC0:
        i += 1
    return i


class OutOfTime(ValueError):
    """An iteration that would run past the evaluation's deadline."""


def matches(
    compiled: Compiled, data: bytes, seconds: float | None, limit: int = 0
) -> Iterator[Found]:
    """Successive non-overlapping matches, as Rust's find_iter yields them: an
    empty match right where the previous match ended is skipped. `limit` > 0
    stops after that many. Each search is linear, but a long subject can hold
    very many matches, so the iteration stops (OutOfTime) once `seconds`
    (the evaluation's time left) have passed."""
    deadline = time.monotonic() + (OUTSIDE_EVALUATION if seconds is None else seconds)
    pos, last_end, count = 0, -1, 0
    while pos <= len(data) and (limit <= 0 or count < limit):
        if count % 1024 == 1023 and time.monotonic() > deadline:
            raise OutOfTime(f"the evaluation's time ran out after {count} matches")
        m = compiled.search(data, pos)
        if m is None:
            return
        start, end = m.span()
        if start == end and end == last_end:
            pos = _next_char(data, end)
            continue
        yield m
        count += 1
        last_end = end
        pos = end if end > start else _next_char(data, end)


def _group_bytes(m: Found, group: int) -> bytes | None:
    start, end = m.span(group)
    return None if start < 0 else m.string[start:end]


def expand(template: str, compiled: Compiled, m: Found) -> str:
    """The replacement text for one match: `$name`, `${name}` and `$N` as
    KumoMTA expands them (the longest name; an unknown group is empty), `$$`
    is a `$`, and a `$` that starts none of those stays."""
    out: list[str] = []
    i = 0
    while i < len(template):
        c = template[i]
        i += 1
        if c != "$":
            out.append(c)
            continue
        if template.startswith("$", i):
            out.append("$")
            i += 1
            continue
        name, i = _reference(template, i)
        if name is None:
            out.append("$")
            continue
        group = compiled.group_of(name)
        value = _group_bytes(m, group) if 0 <= group <= compiled.groups else None
        out.append(value.decode("utf-8") if value else "")
    return "".join(out)


def _reference(template: str, i: int) -> tuple[str | None, int]:
    """The group name after a `$` at i (braced or not), and where it ends."""
    braced = template.startswith("{", i)
    j = i + 1 if braced else i
    k = j
    while k < len(template) and (template[k].isalnum() or template[k] == "_"):
        k += 1
    if k == j:
        return None, i
    if braced:
        if not template.startswith("}", k):
            return None, i
        return template[j:k], k + 1
    return template[j:k], k


def _or_error(work: Any) -> tuple[Any, str | None]:
    """work()'s result, or (None, why) when it ran out of time."""
    try:
        return work(), None
    except OutOfTime as e:
        return None, str(e)


def escape(text: str) -> str:
    """`text` with every regex meta character escaped, as KumoMTA escapes it."""
    return "".join("\\" + c if c in _META else c for c in text)


def functions(context: Context) -> HostFunctions:
    table = context.lua.table_from

    def compile_(pattern: str) -> tuple[Compiled | None, str | None]:
        try:
            return compile_pattern(pattern), None
        except ValueError as e:
            return None, str(e)

    def captures(compiled: Compiled, haystack: str) -> Any:
        data = haystack.encode("utf-8")
        m = compiled.search(data)
        if m is None:
            return None
        out: dict[int | str, bytes] = {}
        for group in range(compiled.groups + 1):
            value = _group_bytes(m, group)
            if value is not None:
                out[group] = value
                if group in compiled.names:
                    out[compiled.names[group]] = value
        return table(out)

    def is_match(compiled: Compiled, haystack: str) -> bool:
        return compiled.search(haystack.encode("utf-8")) is not None

    def find(compiled: Compiled, haystack: str) -> bytes | None:
        m = compiled.search(haystack.encode("utf-8"))
        return None if m is None else _group_bytes(m, 0)

    def find_all(compiled: Compiled, haystack: str, seconds: float | None) -> Any:
        found = matches(compiled, haystack.encode("utf-8"), seconds)
        return _or_error(lambda: table([_group_bytes(m, 0) for m in found]))

    def replacen(
        compiled: Compiled, haystack: str, limit: int, template: str, seconds: float | None
    ) -> Any:
        def replaced() -> bytes:
            data = haystack.encode("utf-8")
            out, last = [], 0
            for m in matches(compiled, data, seconds, limit):
                start, end = m.span()
                out += [data[last:start], expand(template, compiled, m).encode("utf-8")]
                last = end
            out.append(data[last:])
            return b"".join(out)

        return _or_error(replaced)

    def split(compiled: Compiled, haystack: str, seconds: float | None) -> Any:
        def pieces() -> Any:
            data = haystack.encode("utf-8")
            out, last = [], 0
            for m in matches(compiled, data, seconds):
                start, end = m.span()
                out.append(data[last:start])
                last = end
            out.append(data[last:])
            return table(out)

        return _or_error(pieces)

    return {
        "compile": compile_,
        "escape": escape,
        "captures": captures,
        "is_match": is_match,
        "find": find,
        "find_all": find_all,
        "replacen": replacen,
        "split": split,
    }
