"""Authentication-Results (RFC 8601) as msg:add_authentication_results writes
it: the authserv-id, then each result on a line of its own (`method=result`,
`reason=`, then its properties sorted by name, each on its own line), folded
with CRLF and a tab so the field stays one field whatever the values hold.
Values are tokens where they can be, quoted strings otherwise. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_TOKEN = re.compile(r"[!#$%&'*+\-.0-9@A-Z^_`a-z{|}~]+")  # RFC 2045 token, and '@'
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
_PROPERTY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\.[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
FOLD = "\r\n\t"


def _value(text: Any, what: str) -> str:
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a string")
    if _CONTROL.search(text):
        raise ValueError(f"{what} must not hold control characters")
    if _TOKEN.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _keyword(text: Any, what: str) -> str:
    if not isinstance(text, str) or not _KEYWORD.match(text):
        raise ValueError(f"{what} must be a keyword (letters, digits, '-'), got {text!r}")
    return text


def _resinfo(n: int, result: Mapping[str, Any]) -> str:
    where = f"results[{n}]"
    unknown = sorted(set(result) - {"method", "method_version", "result", "reason", "props"})
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r}")
    out = _keyword(result.get("method"), f"{where}.method")
    version = result.get("method_version")
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError(f"{where}.method_version must be a whole number")
        out += f"/{version}"
    out += "=" + _keyword(result.get("result"), f"{where}.result")
    if result.get("reason") is not None:
        out += " reason=" + _value(result["reason"], f"{where}.reason")
    props = result.get("props") or {}
    if not isinstance(props, Mapping):
        raise ValueError(f"{where}.props must be a table of property = value")
    for key in sorted(props):
        if not isinstance(key, str) or not _PROPERTY.match(key):
            raise ValueError(f"{where}.props: {key!r} is not a ptype.property name")
        out += f"{FOLD}{key}=" + _value(props[key], f"{where}.props[{key!r}]")
    return out


def header_value(serv_id: Any, results: Any) -> str:
    """The field's value (without its name); ValueError naming what is wrong."""
    if isinstance(results, Mapping) and not results:
        results = []
    if not isinstance(results, list) or not all(isinstance(r, Mapping) for r in results):
        raise ValueError("results must be a list of AuthenticationResult tables")
    value = _value(serv_id, "server_id")
    if not results:
        return value + "; none"
    return value + "".join(f";{FOLD}{_resinfo(n, r)}" for n, r in enumerate(results, 1))
