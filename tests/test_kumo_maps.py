"""kumo.regex, kumo.regex_set_map, kumo.cidr and kumo.domain_map in the real
engine: KumoMTA's documented examples and its own test vectors, the edge cases
of its rules, linear-time matching, and objects that survive kumo.memoize."""

from __future__ import annotations

import time

import pytest

from policyd.runtime import LuaPolicy
from policyd.source import PolicyError, PolicySource
from tests.test_engine import Engine, mail

# show(v): a value as text, tables with sorted keys, strings quoted; run(f):
# show(f()) or "error: <message>".
SHOW = r"""
local function show(v)
  if type(v) == 'string' then return string.format('%q', v) end
  if type(v) ~= 'table' then return tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) == type(b) then return a < b end
    return type(a) == 'number'
  end)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = tostring(k) .. '=' .. show(v[k]) end
  return '{' .. table.concat(parts, ',') .. '}'
end
local function run(f)
  local ok, v = pcall(f)
  if not ok then return 'error: ' .. tostring(v) end
  return show(v)
end
"""


@pytest.fixture
def results(write_policy):
    """results(setup, *expressions): each expression's value (as `show` writes
    it) when evaluated in a handler after `setup` ran at load; an error at the
    expression's own line reads "policy.lua:@:"."""

    def evaluate(setup: str, *expressions: str) -> list[str]:
        calls = "\n".join(
            f"  out[#out + 1] = run(function() local v = {e}; return v end)" for e in expressions
        )
        text = f"""{SHOW}
{setup}
kumo.on('smtp_server_mail_from', function()
  local out = {{}}
{calls}
  kumo.reject(550, table.concat(out, '\\n'))
end)
"""
        verdict = Engine(LuaPolicy(PolicySource.at(write_policy(text)))).evaluate(mail())
        assert verdict.code == 550, verdict
        first = text.count("\n", 0, text.index("  out[#out + 1]")) + 1
        return [
            out.replace(f"policy.lua:{first + i}:", "policy.lua:@:")
            for i, out in enumerate(verdict.text.split("\n"))
        ]

    return evaluate


@pytest.fixture
def loads(write_policy):
    """loads(text): the policy loads (its asserts hold); PolicyError otherwise."""

    def load(text: str) -> LuaPolicy:
        return LuaPolicy(PolicySource.at(write_policy(text)))

    return load


# kumo.regex ---------------------------------------------------------------


def test_regex_documented_examples(loads) -> None:
    loads(r"""
local re = kumo.regex.compile "'([^']+)'\\s+\\((\\d{4})\\)"
local cap = re:captures "Not my favorite movie: 'Citizen Kane' (1941)."
assert(cap[0] == "'Citizen Kane' (1941)")
assert(cap[1] == 'Citizen Kane')
assert(cap[2] == '1941')

re = kumo.regex.compile "'(?<title>[^']+)'\\s+\\((?<year>\\d{4})\\)"
cap = re:captures "Not my favorite movie: 'Citizen Kane' (1941)."
assert(cap[0] == "'Citizen Kane' (1941)")
assert(cap.title == 'Citizen Kane')
assert(cap.year == '1941')

assert(kumo.regex.compile('oo'):is_match 'foo')
re = kumo.regex.compile 'o+'
assert(re:find 'food' == 'oo')
assert(re:find 'fooood' == 'oooo')

re = kumo.regex.compile '\\b\\w{13}\\b'
local res = re:find_all 'Retroactively relinquishing remunerations is reprehensible.'
assert(table.concat(res, ',') == 'Retroactively,relinquishing,remunerations,reprehensible')

assert(kumo.regex.compile('[^01]+'):replace('1078910', '') == '1010')
re = kumo.regex.compile '(?P<last>[^,\\s]+),\\s+(?P<first>\\S+)'
assert(re:replace('Springsteen, Bruce', '$first $last') == 'Bruce Springsteen')

res = kumo.regex.compile('[ \\t]+'):split 'a b \t  c\td    e'
assert(table.concat(res, ',') == 'a,b,c,d,e' and #res == 5)
""")


def test_regex_return_shapes(results) -> None:
    setup = r"local re = kumo.regex.compile '(a)(x)?(?<n>b)'"
    assert results(
        setup,
        "re:captures 'zzab'",
        "re:captures 'none'",
        "re:find 'none'",
        "re:find_all 'none'",
        "re:is_match 'none'",
        "re:find_all 'ab axb ab'",
    ) == [
        '{0="ab",1="a",3="b",n="b"}',
        "nil",
        "nil",
        "{}",
        "false",
        '{1="ab",2="axb",3="ab"}',
    ]


def test_regex_iterates_empty_matches_as_rust_does(results) -> None:
    assert results(
        "",
        "kumo.regex.compile(''):split 'rust'",
        "kumo.regex.compile('a*'):find_all 'baaac'",
        "kumo.regex.compile('x*'):split 'axb'",
        "kumo.regex.compile('a*'):replace_all('baaac', '-')",
        "kumo.regex.compile(''):find_all 'é'",
    ) == [
        '{1="",2="r",3="u",4="s",5="t",6=""}',
        '{1="",2="aaa",3=""}',
        '{1="",2="a",3="b",4=""}',
        '"-b-c-"',
        '{1="",2=""}',
    ]


def test_regex_replacement_syntax(results) -> None:
    setup = r"local re = kumo.regex.compile '(?<word>\\w+)-(\\d)'"
    subject = "'ab-1 cd-2'"
    assert results(
        setup,
        f"re:replace({subject}, '[$word|$2|$0]')",
        f"re:replace({subject}, '$2a')",
        f"re:replace({subject}, '${{2}}a')",
        f"re:replace({subject}, '$$2 $ $- ${{x')",
        f"re:replace({subject}, '$9 $nope $02')",
        f"re:replace_all({subject}, '$2')",
        f"re:replacen({subject}, 1, 'X')",
        f"re:replacen({subject}, 0, 'X')",
        f"re:replacen({subject}, -1, 'X')",
    ) == [
        '"[ab|1|ab-1] cd-2"',
        '" cd-2"',
        '"1a cd-2"',
        '"$2 $ $- ${x cd-2"',
        '"  1 cd-2"',
        '"1 2"',
        '"X cd-2"',
        '"X X"',
        "error: policy.lua:@: bad argument #2 to regex:replacen"
        " (non-negative integer expected, got -1)",
    ]


def test_regex_classes_are_unicode_as_in_rust(results) -> None:
    assert results(
        "",
        r"kumo.regex.compile('^\\d+$'):is_match '١٢٣'",
        r"kumo.regex.compile('^\\w+$'):is_match 'café'",
        r"kumo.regex.compile('\\s'):is_match '\u{a0}'",
        r"kumo.regex.compile('^\\D$'):is_match '٣'",
        r"kumo.regex.compile('[\\d]'):find 'x٣'",
        r"kumo.regex.compile('\\h+'):find 'zz0fA9q'",
        r"kumo.regex.compile('\\u00e9|\\x{1F600}'):find_all 'é😀'",
        r"kumo.regex.compile('a{,2}'):find 'aaa'",
        r"kumo.regex.compile('(?u)(?i:A)(?#note)b'):find 'xab'",
        r"kumo.regex.compile([[(?'q'.)]]):captures('z').q",
        r"kumo.regex.compile('{2}x'):find '{2}x'",
        r"kumo.regex.compile('{{2}'):find 'x{{{'",
        r"kumo.regex.compile('a*2}'):find 'xaa2}'",
    ) == [
        "true",
        "true",
        "true",
        "false",
        '"٣"',
        '"0fA9"',
        '{1="é",2="😀"}',
        '"aa"',
        '"ab"',
        '"z"',
        '"{2}x"',
        '"{{"',
        '"aa2}"',
    ]


def test_regex_escape(results) -> None:
    assert results(
        "",
        r"kumo.regex.escape 'a.b*c(d)[e]{f}^$|?+\\#&-~ g'",
        r"kumo.regex.compile(kumo.regex.escape 'a.b*c(d)[e]{f}^$|?+\\#&-~ g')"
        r":is_match 'a.b*c(d)[e]{f}^$|?+\\#&-~ g'",
        r"kumo.regex.compile(kumo.regex.escape 'a.b'):is_match 'axb'",
    ) == [
        r'"a\\.b\\*c\\(d\\)\\[e\\]\\{f\\}\\^\\$\\|\\?\\+\\\\\\#\\&\\-\\~ g"',
        "true",
        "false",
    ]


def test_catastrophic_backtracking_patterns_run_in_linear_time(results) -> None:
    setup = "local long = string.rep('a', 200000) .. 'b'"
    started = time.monotonic()
    assert results(
        setup,
        "kumo.regex.compile('(a+)+$'):is_match(long)",
        "kumo.regex.compile('^(a|aa)+$'):is_match(long)",
        "kumo.regex.compile('(x+x+)+y'):is_match(string.rep('x', 100000))",
        "#kumo.regex.compile('(a+)+b'):find(long)",
    ) == ["false", "false", "false", "200001"]
    assert time.monotonic() - started < 2.0


def test_iterating_over_very_many_matches_stops_at_the_deadline(write_policy) -> None:
    policy = write_policy("""
kumo.on('smtp_server_mail_from', function()
  local ok, err = pcall(function()
    local found = kumo.regex.compile(''):find_all(string.rep('x', 5e6))
    return found
  end)
  kumo.reject(550, tostring(err))
end)
""")
    engine = Engine(LuaPolicy(PolicySource.at(policy)))
    started = time.monotonic()
    verdict = engine.evaluate(mail())
    assert time.monotonic() - started < 1.5
    # The handler may still reject, or the engine may notice the deadline first.
    if verdict.code == 550:
        assert verdict.text.startswith(
            "policy.lua:4: regex:find_all: the evaluation's time ran out after "
        ), verdict
    else:
        assert "exceeded its time limit" in verdict.error, verdict


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"foo(?=bar)", "look-around assertions such as (?=...) are not supported"),
        (r"(?<!x)y", "look-around assertions such as (?<!...) are not supported"),
        (r"(?<=x)y", "look-around assertions such as (?<=...) are not supported"),
        (r"(a)\\1", r"backreferences such as \1 are not supported"),
        (r"(?<n>a)\\k<n>", "backreferences are not supported"),
        (r"a++", "possessive repetitions such as a++ are not supported"),
        (r"(?>a)", "atomic groups (?>...) are not supported"),
        (r"a\\Z", r"\Z is a look-ahead"),
        (r"[a[bc]]", "nested character classes"),
        (r"[a-z&&[^aeiou]]", "character class set operations (&&)"),
        (r"(?x) a b", "the x (verbose) flag is not supported"),
        (r"\\C", r"\C is not a valid escape"),
        (r"(", "missing )"),
        (r"\\p{Alphabetic}", r"invalid character class range: \p{Alphabetic}"),
    ],
)
def test_patterns_that_need_backtracking_are_refused_at_compile(results, pattern, reason) -> None:
    [text] = results("", f"kumo.regex.compile('{pattern}')")
    assert text.startswith("error: policy.lua:@: "), text
    assert "kumo.regex.compile(" in text and reason in text, text


def test_refusal_names_the_pattern_and_the_line(loads) -> None:
    with pytest.raises(PolicyError) as err:
        loads("local x = 1\nlocal re = kumo.regex.compile 'foo(?!bar)'\n")
    assert str(err.value).startswith(
        'policy.lua:2: kumo.regex.compile("foo(?!bar)"): look-around assertions such as'
        " (?!...) are not supported (patterns run on a linear-time engine here)"
    ), str(err.value)


def test_regex_argument_errors(results) -> None:
    setup = "local re = kumo.regex.compile 'a'"
    assert results(
        setup,
        "re.is_match('a')",
        "re:is_match('\\255')",
        "re:is_match(nil)",
        "re:is_match(12)",
        "kumo.regex.compile(string.rep('a', 70000))",
    ) == [
        "error: policy.lua:@: regex:is_match: call it as a method, re:is_match(...)",
        "error: policy.lua:@: regex:is_match: argument #1 is not valid UTF-8",
        "error: policy.lua:@: bad argument #1 to regex:is_match (string expected, got nil)",
        "false",
        'error: policy.lua:@: kumo.regex.compile("' + "a" * 200 + '..."): the pattern is'
        " longer than 65536 bytes",
    ]


def test_policies_hold_no_host_object(results) -> None:
    setup = """
local objects = { kumo.regex.compile 'a', kumo.cidr.make_map { ['10.0.0.0/8'] = 1 },
                  kumo.domain_map.new { a = 1 }, kumo.regex_set_map.new { a = 1 } }
local function fields(o)
  local n = 0
  for _ in pairs(o) do n = n + 1 end
  local mt = getmetatable(o)
  local names = {}
  for k, v in pairs(mt) do names[#names + 1] = k .. ':' .. type(v) end
  return n .. ' ' .. table.concat(names, ',')
end
"""
    assert results(
        setup,
        "fields(objects[1])",
        "fields(objects[2])",
        "fields(objects[3])",
        "fields(objects[4])",
        "pcall(setmetatable, objects[2], {})",
    ) == ['"0 __memoize:function"'] * 4 + ["false"]


# kumo.regex_set_map -------------------------------------------------------


def test_regex_set_map_documented_example(loads) -> None:
    loads("""
local map = kumo.regex_set_map.new {
  hello = 'hello',
  bye = 'bye',
  later = 'bye',
  ['Good day'] = 'hello',
}
assert(map['hello there'] == 'hello')
assert(map['goodbye'] == 'bye')
assert(map['see you later'] == 'bye')
assert(map['not.set'] == nil)
""")


def test_regex_set_map_kumomta_vectors(results) -> None:
    setup = r"""
local map = kumo.regex_set_map.new {
  ['4\\.2\\.2 The email account that you tried to reach is over quota\\.'] = 500,
  ['4\\.2\\.1 <.+>: Recipient address rejected: this mailbox is inactive and has been'
   .. ' disabled'] = 501,
  ['4\\.1\\.1 <.*> 4.2.2 mailbox full\\.'] = 502,
}
"""
    assert results(
        setup,
        "map['400 4.2.2 The email account that you tried to reach is over quota']",
        "map['400 4.2.2 The email account that you tried to reach is over quota.']",
        "map['400 4.2.1 <foo>: Recipient address rejected: this mailbox is inactive and has"
        " been disabled']",
        "map['400 4.1.1 <bar> 4.2.2 mailbox full.']",
    ) == ["nil", "500", "501", "502"]


def test_regex_set_map_overlaps_copies_and_errors(results) -> None:
    setup = """
local map = kumo.regex_set_map.new {
  b = 'second', a = 'first', ['^x'] = { n = 1 }, ['(?i)CASE'] = 3,
}
"""
    assert results(
        setup,
        "map['ab']",
        "map['b']",
        "map['xyz']",
        "(function() map['xyz'].n = 2 return map['xyz'].n end)()",
        "map['a case']",
        "map[42]",
        "map[{}]",
        "(function() map.q = 1 end)()",
        "kumo.regex_set_map.new { ['(?=a)'] = 1 }",
        "kumo.regex_set_map.new { a = print }",
        "kumo.regex_set_map.new()['anything']",
    ) == [
        '"first"',
        '"second"',
        "{n=1}",
        "1",
        "3",
        "nil",
        "error: policy.lua:@: kumo.regex_set_map: the subject must be a string, got table",
        "error: policy.lua:@: kumo.regex_set_map: a regex set map cannot be changed once made",
        "error: policy.lua:@: kumo.regex_set_map.new: compiling rules: look-around assertions"
        " such as (?=...) are not supported (patterns run on a linear-time engine here), in the"
        " pattern '(?=a)'",
        "error: policy.lua:@: kumo.regex_set_map.new: a function value cannot be stored in a map",
        "nil",
    ]


# kumo.cidr ------------------------------------------------------------------


def test_cidr_documented_examples(loads) -> None:
    loads("""
local cmap = kumo.cidr.make_map()
cmap['127.0.0.1'] = 'bar'
assert(cmap['127.0.0.1'] == 'bar')
assert(cmap['not.set'] == nil)

cmap = kumo.cidr.make_map()
cmap['10.0.0.0/24'] = '10. block'
assert(cmap['10.0.0.1'] == '10. block')
assert(cmap['10.0.0.42'] == '10. block')
assert(cmap['100.0.0.100'] == nil)

cmap = kumo.cidr.make_map {
  ['127.0.0.0/24'] = 'loopback',
  ['10.0.0.0/24'] = 'lan',
}
cmap['4.2.4.2'] = 4242
assert(cmap['4.2.4.2'] == 4242)
assert(cmap['127.0.0.1:25'] == 'loopback')
assert(cmap['[127.0.0.1]'] == 'loopback')
assert(cmap['[10.0.0.9]:25'] == 'lan')
""")


def test_cidr_kumomta_vectors(results) -> None:
    setup = """
local set = kumo.cidr.make_map {
  ['127.0.0.1'] = 'loopbackv4',
  ['::1'] = 'loopbackv6',
  ['192.168.1.0/24'] = '.1',
  ['192.168.1.24'] = '.1',
  ['192.168.3.0/28'] = '.3',
  ['192.168.3.2'] = '.3.split',
  ['10.0.3.0/24'] = '10.3',
  ['10.0.4.0/24'] = '10.4',
  ['10.0.7.0/24'] = '10.7',
}
"""
    keys = [
        "127.0.0.1", "127.0.0.2", "::1", "192.168.2.1", "192.168.1.0", "192.168.1.1",
        "192.168.1.100", "192.168.1.24", "192.168.3.0", "192.168.3.16", "192.168.3.2",
        "10.0.4.255", "[::1]:2525",
    ]  # fmt: skip
    assert results(setup, *(f"set['{k}']" for k in keys)) == [
        '"loopbackv4"', "nil", '"loopbackv6"', "nil", '".1"', '".1"', '".1"', '".1"', '".3"',
        "nil", '".3.split"', '"10.4"', '"loopbackv6"',
    ]  # fmt: skip


def test_cidr_later_blocks_cover_earlier_ones_as_kumomta_tree_does(results) -> None:
    setup = """
local m = kumo.cidr.make_map { ['10.1.0.0/16'] = 'narrow', ['10.0.0.0/8'] = 'wide', any = 'all' }
local before = { m['10.1.2.3'], m['10.2.0.0'], m['192.0.2.1'], m['2001:db8::1'] }
m['10.0.0.0/8'] = 'replaced'
m['10.1.2.0/24'] = nil
"""
    assert results(
        setup,
        "before",
        "m['10.1.2.3']",
        "m['10.1.3.3']",
        "m['10.9.9.9']",
        "m['any']",
        "m['::ffff:10.1.3.3']",
        "m['10.1.2.0/24']",
    ) == [
        '{1="narrow",2="wide",3="all",4="all"}',
        "nil",
        '"replaced"',
        '"replaced"',
        "nil",
        '"all"',
        "nil",
    ]


def test_cidr_key_errors(results) -> None:
    setup = "local m = kumo.cidr.make_map()"
    assert results(
        setup,
        "(function() m['10.0.0.1/24'] = 1 end)()",
        "(function() m['host.example'] = 1 end)()",
        "(function() m['[nope]:25'] = 1 end)()",
        "(function() m[true] = 1 end)()",
        "kumo.cidr.make_map { ['::1/129'] = 1 }",
        "kumo.cidr.make_map { ['10.0.0.0/8'] = print }",
        "m['fe80::1%eth0']",
        "m[4]",
    ) == [
        "error: policy.lua:@: kumo.cidr map: 10.0.0.1/24 is not a valid CIDR block: host bits"
        " are set; did you mean 10.0.0.0/24?",
        "error: policy.lua:@: kumo.cidr map: host.example is not an IP address",
        "error: policy.lua:@: kumo.cidr map: nope is not an IP address (the []-enclosed part"
        " of '[nope]:25')",
        "error: policy.lua:@: kumo.cidr map: the key must be a string, got boolean",
        "error: policy.lua:@: kumo.cidr.make_map: ::1/129 is not a valid CIDR block: bad"
        " prefix length",
        "error: policy.lua:@: kumo.cidr.make_map: a function value cannot be stored in a map",
        "nil",
        "nil",
    ]


# kumo.domain_map -------------------------------------------------------------


def test_domain_map_documented_examples(loads) -> None:
    loads("""
local dmap = kumo.domain_map.new()
dmap['foo'] = 'bar'
assert(dmap['foo'] == 'bar')
assert(dmap['not.set'] == nil)

dmap = kumo.domain_map.new()
dmap['*.example.com'] = 'wildcard'
assert(dmap['example.com'] == nil)
assert(dmap['foo.example.com'] == 'wildcard')
dmap['explicit.example.com'] = 'explicit'
assert(dmap['explicit.example.com'] == 'explicit')

dmap = kumo.domain_map.new {
  ['*.woot.com'] = 123,
  ['example.com'] = 24,
}
dmap['*.example.com'] = 42
assert(dmap['lemon.example.com'] == 42)
assert(dmap['example.com'] == 24)
assert(dmap['woot.com'] == nil)
assert(dmap['aa.woot.com'] == 123)
""")


def test_domain_map_kumomta_vectors_and_rules(results) -> None:
    setup = """
local map = kumo.domain_map.new()
map['*.example.com'] = 42
map['example.com'] = 24
map['omg.wtf.woot.example.com'] = 128
map['kept.example.com'] = 'x'
map['kept.example.com'] = nil
"""
    names = [
        "foo.com", "example.com", "lemon.example.com", "lemon.cake.example.com",
        "woot.example.com", "wtf.woot.example.com", "omg.wtf.woot.example.com",
        "x.woot.example.com", "Lemon.Example.COM", "EXAMPLE.COM", "kept.example.com",
        "a.kept.example.com", "*.example.com", "example.com.",
    ]  # fmt: skip
    assert results(setup, *(f"map['{n}']" for n in names)) == [
        "nil", "24", "42", "42", "nil", "nil", "128", "nil", "nil", "nil", "nil", "nil", "42",
        "nil",
    ]  # fmt: skip


def test_domain_map_values_are_copies(results) -> None:
    setup = """
local source = { relay_to = true, list = { 'a' } }
local map = kumo.domain_map.new { ['example.com'] = source, re = kumo.regex.compile 'x' }
source.relay_to = false
local first = map['example.com']
first.relay_to = nil
first.list[1] = 'changed'
"""
    assert results(
        setup,
        "map['example.com']",
        "map.re:is_match 'axb'",
        "kumo.domain_map.new { a = coroutine.create(print) }",
        "kumo.domain_map.new { a = { [1.5] = 1 } }",
        "kumo.domain_map.new(5)",
        "map[nil]",
        "map[7]",
    ) == [
        '{list={1="a"},relay_to=true}',
        "true",
        "error: policy.lua:@: kumo.domain_map.new: a thread value cannot be stored in a map",
        "error: policy.lua:@: kumo.domain_map.new: the table key 1.5 cannot be stored in a map"
        " (strings and integers only)",
        "error: policy.lua:@: bad argument #1 to kumo.domain_map.new (table expected, got number)",
        "error: policy.lua:@: kumo.domain_map: the key must be a string, got nil",
        "nil",
    ]


# kumo.memoize ------------------------------------------------------------------


def test_every_object_survives_kumo_memoize(results, request) -> None:
    setup = f"""
local made = 0
local build = kumo.memoize(function()
  made = made + 1
  local cidr = kumo.cidr.make_map {{ ['10.0.0.0/8'] = 'wide', ['10.1.0.0/16'] = 'narrow' }}
  cidr['10.1.2.0/24'] = {{ n = 1 }}
  cidr['10.0.0.0/8'] = 'wide again'
  local domains = kumo.domain_map.new {{ ['*.example.com'] = 1, ['a.b.example.com'] = 2 }}
  domains['gone.example.com'] = nil
  return {{
    re = kumo.regex.compile '(?<w>\\\\w+)@',
    set = kumo.regex_set_map.new {{ ['^4'] = 'temp', ['^5'] = {{ perm = true }} }},
    cidr = cidr,
    domains = domains,
    nested = kumo.domain_map.new {{ inner = kumo.cidr.make_map {{ any = 'x' }} }},
  }}
end, {{ name = 'maps.{request.node.name}', ttl = '1h', capacity = 1 }})
local first = build()
"""
    probes = [
        "first.re:captures('me@x').w",
        "first.cidr['10.1.2.3']",
        "first.cidr['10.1.3.3']",
        "first.domains['x.example.com']",
        "first.domains['gone.example.com']",
        "first.set['550 no']",
    ]
    hit = [p.replace("first.", "build().") for p in probes]
    assert results(setup, *probes, *hit, "build().nested.inner['::1']", "made") == [
        '"me"',
        '"wide again"',
        '"wide again"',
        "1",
        "nil",
        "{perm=true}",
    ] * 2 + ['"x"', "1"]
