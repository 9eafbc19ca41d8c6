"""kumo.memoize in the real engine: keys, results, capacity, ttl, failures,
sharing across Lua states and revisions of one process."""

from __future__ import annotations

import pytest

from policyd.durations import parse_duration
from policyd.extensions import memoize
from policyd.runtime import LuaPolicy
from policyd.source import PolicyError, PolicySource
from tests.test_engine import Engine, mail


@pytest.fixture
def load(write_policy):
    def make(text: str) -> Engine:
        return Engine(LuaPolicy(PolicySource.at(write_policy(text))))

    return make


def text_of(engine: Engine, sender: str = "a@b.example") -> str:
    verdict = engine.evaluate(mail(sender))
    assert verdict.code == 550, verdict
    return verdict.text


def policy(body: str, params: str = "name = '{name}', ttl = '5 minutes', capacity = 100") -> str:
    return f"""
local calls = 0
local function work(...)
  calls = calls + 1
  {body}
end
local cached = kumo.memoize(work, {{ {params} }})
kumo.on('smtp_server_mail_from', function(sender)
  local ok, a, b = pcall(cached, sender.domain, sender.user)
  kumo.reject(550, string.format('%s %s %s calls=%d', tostring(ok), kumo.json_encode_compat(a),
    tostring(b), calls))
end)
"""


COMPAT = """
function kumo.json_encode_compat(v)
  if type(v) ~= 'table' then return tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local x = v[k] ~= nil and v[k] or v[tonumber(k)]
    parts[#parts + 1] = k .. '=' .. kumo.json_encode_compat(x)
  end
  return '{' .. table.concat(parts, ',') .. '}'
end
"""


@pytest.fixture
def name(request) -> str:
    """A cache name of this test's own: caches are per process."""
    return f"test.{request.node.name}"


def test_second_call_with_the_same_arguments_is_a_hit(load, name) -> None:
    engine = load(COMPAT + policy("return {domain = (...), n = calls}").replace("{name}", name))
    assert text_of(engine) == "true {domain=b.example,n=1} nil calls=1"
    assert text_of(engine) == "true {domain=b.example,n=1} nil calls=1"
    assert text_of(engine, "a@other.example") == "true {domain=other.example,n=2} nil calls=2"


def test_several_results_come_back_as_one_list_as_in_kumomta(load, name) -> None:
    engine = load(COMPAT + policy("return 'x', 2, true").replace("{name}", name))
    assert text_of(engine) == "true {1=x,2=2,3=true} nil calls=1"
    assert text_of(engine) == "true {1=x,2=2,3=true} nil calls=1"


def test_each_hit_returns_a_fresh_copy(load, name) -> None:
    engine = load(
        COMPAT
        + f"""
local cached = kumo.memoize(function() return {{ n = 1 }} end,
                            {{ name = '{name}', ttl = 60, capacity = 4 }})
kumo.on('smtp_server_mail_from', function()
  local first = cached()
  first.n = 99
  kumo.reject(550, tostring(cached().n))
end)
"""
    )
    assert text_of(engine) == "1"


def test_capacity_evicts_the_least_recently_used(load, name) -> None:
    engine = load(
        COMPAT
        + policy("return calls", f"name = '{name}', ttl = '1h', capacity = 2").replace(
            "{name}", name
        )
    )
    assert text_of(engine, "a@one") == "true 1 nil calls=1"
    assert text_of(engine, "a@two") == "true 2 nil calls=2"
    assert text_of(engine, "a@one") == "true 1 nil calls=2"
    assert text_of(engine, "a@three") == "true 3 nil calls=3"  # evicts two
    assert text_of(engine, "a@one") == "true 1 nil calls=3"
    assert text_of(engine, "a@two") == "true 4 nil calls=4"


def test_entries_expire_after_the_ttl(load, name, monkeypatch) -> None:
    engine = load(COMPAT + policy("return calls").replace("{name}", name))
    now = [1000.0]
    monkeypatch.setattr(memoize._caches[name], "clock", lambda: now[0])
    assert text_of(engine) == "true 1 nil calls=1"
    now[0] += 299
    assert text_of(engine) == "true 1 nil calls=1"
    now[0] += 2
    assert text_of(engine) == "true 2 nil calls=2"


def test_a_failure_is_cached_for_a_minute(load, name, monkeypatch) -> None:
    engine = load(COMPAT + policy("error('lookup failed ' .. calls)").replace("{name}", name))
    now = [0.0]
    monkeypatch.setattr(memoize._caches[name], "clock", lambda: now[0])
    first = text_of(engine)
    assert first.startswith("false ") and "lookup failed 1" in first and first.endswith("calls=1")
    assert "lookup failed 1" in text_of(engine)
    now[0] += 61
    assert "lookup failed 2" in text_of(engine)


def test_a_rejection_inside_is_the_verdict_and_not_cached(load, name) -> None:
    engine = load(
        f"""
local calls = 0
local cached = kumo.memoize(function()
  calls = calls + 1
  kumo.reject(451, 'try later ' .. calls)
end, {{ name = '{name}', ttl = 60, capacity = 4 }})
kumo.on('smtp_server_mail_from', function() cached() end)
"""
    )
    assert engine.evaluate(mail()).text == "try later 1"
    assert engine.evaluate(mail()).text == "try later 2"


def test_table_arguments_key_by_content_in_any_order(load, name) -> None:
    engine = load(
        f"""
local calls = 0
local cached = kumo.memoize(function(t) calls = calls + 1 return calls end,
                            {{ name = '{name}', ttl = 60, capacity = 4 }})
kumo.on('smtp_server_mail_from', function()
  local a = cached({{ x = 1, y = {{ 'p', 'q' }}, z = 'é\\255' }})
  local t = {{}}
  t.z = 'é\\255'; t.y = {{ 'p', 'q' }}; t.x = 1
  local b = cached(t)
  local c = cached({{ x = 2 }})
  kumo.reject(550, a .. b .. c)
end)
"""
    )
    assert text_of(engine) == "112"


def test_cache_is_shared_by_lua_states_and_revisions_of_the_process(write_policy, name) -> None:
    text = COMPAT + policy("return calls").replace("{name}", name)
    first = Engine(LuaPolicy(PolicySource.at(write_policy(text))))
    second = Engine(LuaPolicy(PolicySource.at(write_policy(text + "\n-- another revision\n"))))
    assert first.policy.revision != second.policy.revision
    assert text_of(first) == "true 1 nil calls=1"
    assert text_of(second) == "true 1 nil calls=0"  # its own `calls`, never called


def test_invalidate_with_epoch_keys_by_revision(write_policy, name) -> None:
    text = COMPAT + policy(
        "return calls", f"name = '{name}', ttl = 60, capacity = 4, invalidate_with_epoch = true"
    ).replace("{name}", name)
    first = Engine(LuaPolicy(PolicySource.at(write_policy(text))))
    second = Engine(LuaPolicy(PolicySource.at(write_policy(text + "\n-- changed\n"))))
    assert text_of(first) == "true 1 nil calls=1"
    assert text_of(second) == "true 1 nil calls=1"  # a miss: computed in its own state


def test_load_time_calls_work(load, name) -> None:
    engine = load(
        f"""
local cached = kumo.memoize(function(x) return x * 2 end,
                            {{ name = '{name}', ttl = 60, capacity = 4 }})
local at_load = cached(21)
kumo.on('smtp_server_mail_from', function() kumo.reject(550, at_load .. ' ' .. cached(21)) end)
"""
    )
    assert text_of(engine) == "42 42"


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ("{ ttl = 60, capacity = 1 }", "missing required parameter name"),
        ("{ name = 'x', capacity = 1 }", "missing required parameter ttl"),
        ("{ name = 'x', ttl = 60 }", "missing required parameter capacity"),
        ("{ name = 'x', ttl = 60, capacity = 1, colour = 'red' }", "unknown parameter colour"),
        ("{ name = 'x', ttl = 'soon', capacity = 1 }", "ttl 'soon'"),
        ("{ name = 'x', ttl = 60, capacity = 0 }", "capacity must be a positive integer"),
        ("'x'", "must be a table"),
    ],
)
def test_bad_parameters_fail_the_load_clearly(write_policy, params: str, error: str) -> None:
    path = write_policy(f"local f = kumo.memoize(function() end, {params})\n")
    with pytest.raises(PolicyError) as raised:
        LuaPolicy(PolicySource.at(path))
    assert "kumo.memoize: " in str(raised.value) and error in str(raised.value)
    assert ":1:" in str(raised.value)


def test_functions_cannot_be_keys(load, name) -> None:
    engine = load(
        f"""
local cached = kumo.memoize(function() return 1 end, {{ name = '{name}', ttl = 60, capacity = 4 }})
kumo.on('smtp_server_mail_from', function()
  local ok, err = pcall(cached, print)
  kumo.reject(550, err)
end)
"""
    )
    assert f"kumo.memoize {name}: a function value cannot be memoized" in text_of(engine)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(5, 5.0), (0.5, 0.5), ("5 minutes", 300.0), ("10s", 10.0), ("1h 30m", 5400.0),
     ("2 days", 172800.0), ("250ms", 0.25)],
)  # fmt: skip
def test_durations_read_as_kumomta_writes_them(text, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "five minutes", "5 fortnights", -1, True])
def test_bad_durations_are_refused(text) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
