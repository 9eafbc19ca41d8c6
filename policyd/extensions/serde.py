"""kumo.serde: JSON, TOML and YAML to and from Lua values, as KumoMTA converts them.

KumoMTA goes through serde with mlua's default rules, which decide what a Lua
table is: one whose length (`#t`) is above zero is an array of t[1]..t[#t]
(holes become null, other keys are dropped); any other table, the empty one
included, is an object. JSON null (and YAML's) becomes nil, so it leaves a hole
in an array and no key in an object. Parsed TOML dates and times come back as
toml's own marker table, `{["$__toml_private_datetime"] = "1979-05-27T07:32:00Z"}`.
JSON numbers print as Rust prints them (`1.0`, `1e20`, NaN and infinities as
`null`); TOML and YAML text is the same data as KumoMTA's but laid out by
tomli-w and PyYAML, so it may differ in spacing and quoting.

Inputs are bounded (MAX_INPUT bytes of text, MAX_DEPTH levels, MAX_NODES values
converted per call), so no policy can make one call take unbounded host time.
"""

from __future__ import annotations

import datetime
import decimal
import json
import math
import re
import tomllib
from collections.abc import Callable
from typing import Any

import tomli_w
import yaml
from lupa import lua54

from policyd.extensions import Context, HostFunctions
from policyd.source import PolicyError

MAX_INPUT = 4 * 1024 * 1024  # bytes of text to parse (a few MB/s for TOML and YAML)
MAX_DEPTH = 128  # serde_json's own recursion limit
MAX_NODES = 1_000_000  # values in one conversion (shared subtables count each time)
TOML_DATETIME = "$__toml_private_datetime"

Plain = Any  # None, bool, int, float, str, list, dict


class Budget:
    """Counts the values one conversion visits."""

    def __init__(self) -> None:
        self.left = MAX_NODES

    def spend(self, depth: int) -> None:
        self.left -= 1
        if self.left < 0:
            raise ValueError(f"the value has more than {MAX_NODES} elements")
        if depth > MAX_DEPTH:
            raise ValueError(f"the value is nested more than {MAX_DEPTH} levels deep (or cyclic)")


# Lua to plain Python ---------------------------------------------------------


def from_lua(value: Any, budget: Budget | None = None, depth: int = 0) -> Plain:
    """A Lua value as plain Python by mlua's rules (see the module docstring);
    ValueError for functions and other values serde cannot represent."""
    budget = budget or Budget()
    budget.spend(depth)
    kind = lua54.lua_type(value)
    if kind is None:
        return value
    if kind != "table":
        raise ValueError(f"cannot serialize <{kind}>")
    try:
        items = dict(value.items())
    except UnicodeDecodeError:
        raise ValueError("strings must be valid UTF-8") from None
    length = len(value)
    if length > 0:
        return [from_lua(items.get(i), budget, depth + 1) for i in range(1, length + 1)]
    return {key: from_lua(v, budget, depth + 1) for key, v in items.items()}


# Plain Python to Lua ---------------------------------------------------------


def _integer(n: int) -> int | float:
    """mlua's rule for integers beyond Lua's 64 bits: they become floats."""
    return n if -(2**63) <= n < 2**63 else float(n)


def to_lua(lua: Any, value: Plain, budget: Budget | None = None, depth: int = 0) -> Any:
    """Parsed data as Lua values: null leaves nothing (a hole, a missing key)."""
    budget = budget or Budget()
    budget.spend(depth)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return _integer(value)
    if isinstance(value, str):
        value.encode("utf-8")  # lone surrogates (\ud800) are refused here
        return value
    if isinstance(value, datetime.date | datetime.time):
        return lua.table_from({TOML_DATETIME: _toml_datetime(value)})
    if isinstance(value, list):
        pairs = ((i, to_lua(lua, v, budget, depth + 1)) for i, v in enumerate(value, 1))
        return lua.table_from({i: v for i, v in pairs if v is not None})
    if isinstance(value, dict):
        pairs = ((k, to_lua(lua, v, budget, depth + 1)) for k, v in value.items())
        return lua.table_from({k: v for k, v in pairs if v is not None})
    raise ValueError(f"cannot convert a {type(value).__name__} value")


def _toml_datetime(value: datetime.date | datetime.time) -> str:
    """A TOML date or time as the toml crate writes it (fraction without
    trailing zeros, Z for UTC)."""
    if isinstance(value, datetime.datetime):
        text = f"{value.date().isoformat()}T{_toml_time(value.time())}"
        offset = value.utcoffset()
        if offset is None:
            return text
        if not offset:
            return text + "Z"
        minutes = int(offset.total_seconds()) // 60
        sign = "-" if minutes < 0 else "+"
        return text + f"{sign}{abs(minutes) // 60:02}:{abs(minutes) % 60:02}"
    if isinstance(value, datetime.time):
        return _toml_time(value)
    return value.isoformat()


def _toml_time(value: datetime.time) -> str:
    text = f"{value.hour:02}:{value.minute:02}:{value.second:02}"
    if value.microsecond:
        text += "." + f"{value.microsecond:06}".rstrip("0")
    return text


# JSON ------------------------------------------------------------------------


def rust_float(x: float) -> str:
    """A finite float as Rust's ryu prints it: `1.0`, `0.00001`, `1e-6`, `1e16`."""
    if x == 0:
        return "-0.0" if math.copysign(1, x) < 0 else "0.0"
    sign = "-" if x < 0 else ""
    parts = decimal.Decimal(repr(abs(x))).normalize().as_tuple()
    digits = "".join(map(str, parts.digits))
    point = len(digits) + int(parts.exponent)  # the value is 0.DIGITS * 10**point
    if point >= len(digits) and point <= 16:
        return f"{sign}{digits}{'0' * (point - len(digits))}.0"
    if 0 < point <= 16:
        return f"{sign}{digits[:point]}.{digits[point:]}"
    if -5 < point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    rest = f".{digits[1:]}" if len(digits) > 1 else ""
    return f"{sign}{digits[0]}{rest}e{point - 1}"


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    if isinstance(key, float) and math.isfinite(key):
        return rust_float(key)
    raise ValueError("object keys must be strings or numbers")


def _json_scalar(value: Plain) -> str:
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return rust_float(value) if math.isfinite(value) else "null"
    return json.dumps(value, ensure_ascii=False)


def dump_json(value: Plain) -> str:
    """Compact JSON as serde_json writes it, object keys in Lua's order."""
    if isinstance(value, list):
        return "[" + ",".join(dump_json(v) for v in value) + "]"
    if isinstance(value, dict):
        parts = (f"{_json_scalar(_json_key(k))}:{dump_json(v)}" for k, v in value.items())
        return "{" + ",".join(parts) + "}"
    return _json_scalar(value)


def dump_json_pretty(value: Plain, indent: str = "") -> str:
    """Pretty JSON as serde_json writes it: two spaces, keys sorted."""
    inner = indent + "  "
    if isinstance(value, list) and value:
        parts = (inner + dump_json_pretty(v, inner) for v in value)
        return "[\n" + ",\n".join(parts) + "\n" + indent + "]"
    if isinstance(value, dict) and value:
        keyed = sorted((_json_key(k), v) for k, v in value.items())
        parts = (f"{inner}{_json_scalar(k)}: {dump_json_pretty(v, inner)}" for k, v in keyed)
        return "{\n" + ",\n".join(parts) + "\n" + indent + "}"
    if isinstance(value, list | dict):
        return "[]" if isinstance(value, list) else "{}"
    return _json_scalar(value)


def strip_comments(text: str) -> str:
    """/* */, // and # comments outside strings turned into spaces, as
    KumoMTA's JSON reader does before parsing."""
    out: list[str] = []
    i, n, start = 0, len(text), 0
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
        elif c == "#" or text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out += [text[start:i], " " * (end - i)]
            i = start = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise ValueError("a /* comment is not closed")
            out += [text[start:i], _blank(text[i : end + 2])]
            i = start = end + 2
        else:
            i += 1
    out.append(text[start:])
    return "".join(out)


def _blank(comment: str) -> str:
    """A comment as spaces, keeping its newlines so error lines stay right."""
    return "".join(c if c == "\n" else " " for c in comment)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(text: str) -> Plain:
    try:
        return json.loads(strip_comments(text), parse_constant=_refuse_constant)
    except json.JSONDecodeError as e:
        raise ValueError(f"{e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise ValueError(f"the JSON is nested more than {MAX_DEPTH} levels deep") from None


# TOML ------------------------------------------------------------------------


def parse_toml(text: str) -> Plain:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(str(e)) from None


def _toml_tree(value: Plain) -> Plain:
    """Checks what TOML cannot hold: nulls and non-string keys."""
    if value is None:
        raise ValueError("TOML has no null (nil) value")
    if isinstance(value, list):
        return [_toml_tree(v) for v in value]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise ValueError(f"TOML keys must be strings, not {key!r}")
        return {k: _toml_tree(v) for k, v in value.items()}
    return value


def dump_toml(value: Plain, pretty: bool) -> str:
    if not isinstance(value, dict):
        raise ValueError("only a table with string keys can be written as TOML")
    return tomli_w.dumps(_toml_tree(value), multiline_strings=pretty)


# YAML: the YAML 1.2 core schema serde_yaml reads (yes/no/on/off stay strings,
# dates stay strings), map keys as their text. ---------------------------------


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """PyYAML's safe loader (on libyaml where there is one, several times
    faster) with YAML 1.2's core schema instead of 1.1's."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            return super().construct_mapping(node, deep)
        self.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "map keys must be scalars", key_node.start_mark
                )
            out[key_node.value] = self.construct_object(value_node, deep=deep)
        return out


_Loader.yaml_implicit_resolvers = {}  # none of YAML 1.1's
for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
):
    _Loader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first))


def _construct_int(loader: _Loader, node: Any) -> int:
    text = loader.construct_scalar(node).lower()
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text)


def _construct_float(loader: _Loader, node: Any) -> float | None:
    """Floats as serde_json's Value holds them: NaN and infinities become null."""
    value = float(loader.construct_scalar(node).lower().replace(".inf", "inf"))
    return value if math.isfinite(value) else None


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def parse_yaml(text: str) -> Plain:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no object tags
    except yaml.YAMLError as e:
        raise ValueError(" ".join(str(e).split())) from None
    except RecursionError:
        raise ValueError(f"the YAML is nested more than {MAX_DEPTH} levels deep") from None


def dump_yaml(value: Plain) -> str:
    text = yaml.safe_dump(value, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return text.removesuffix("...\n")


# Host functions ----------------------------------------------------------------

Result = tuple[Any, str | None]


def functions(context: Context) -> HostFunctions:
    lua = context.lua

    def parser(parse: Callable[[str], Plain]) -> Callable[[str], Result]:
        def run(text: str) -> Result:
            if len(text) > MAX_INPUT:
                return None, f"the text is longer than {MAX_INPUT} bytes"
            try:
                return to_lua(lua, parse(text)), None
            except (ValueError, UnicodeEncodeError) as e:
                return None, str(e)

        return run

    def loader(parse: Callable[[str], Plain]) -> Callable[[str], Result]:
        def run(path: str) -> Result:
            try:
                data = context.read_data(path)
            except PolicyError as e:
                return None, str(e)
            if len(data) > MAX_INPUT:
                return None, f"the file is longer than {MAX_INPUT} bytes"
            try:
                return to_lua(lua, parse(data.decode("utf-8"))), None
            except UnicodeDecodeError:
                return None, "the file is not valid UTF-8"
            except (ValueError, UnicodeEncodeError) as e:
                return None, str(e)

        return run

    def encoder(dump: Callable[[Plain], str]) -> Callable[[Any], Result]:
        def run(value: Any) -> Result:
            try:
                return dump(from_lua(value)), None
            except ValueError as e:
                return None, str(e)

        return run

    return {
        "json_parse": parser(parse_json),
        "json_load": loader(parse_json),
        "json_encode": encoder(dump_json),
        "json_encode_pretty": encoder(dump_json_pretty),
        "toml_parse": parser(parse_toml),
        "toml_load": loader(parse_toml),
        "toml_encode": encoder(lambda v: dump_toml(v, pretty=False)),
        "toml_encode_pretty": encoder(lambda v: dump_toml(v, pretty=True)),
        "yaml_parse": parser(parse_yaml),
        "yaml_load": loader(parse_yaml),
        "yaml_encode": encoder(dump_yaml),
    }
