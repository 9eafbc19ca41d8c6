"""kumo.serde, kumo.string, kumo.encode, kumo.digest, kumo.uuid and kumo.time in
real loaded policies, checked against the values KumoMTA documents (its
reference examples and its own module tests are the vectors) and Rust's
semantics where the documentation is silent.

Most checks run while the policy loads: `EQ(actual, expected)` fails the load
with both values, so a passing load is a passing check. Values that need an
evaluation (sleep, an error's line) go through a handler's reject text.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from policyd.runtime import LuaPolicy
from policyd.source import PolicyError, PolicySource
from tests.test_engine import Engine, mail

PRELUDE = r"""
local function show(v)
  if type(v) == 'string' then return string.format('%q', v) end
  return tostring(v)
end
function EQ(actual, expected, what)
  if actual ~= expected then
    error(string.format('%s: got %s, expected %s', what or 'EQ', show(actual), show(expected)), 2)
  end
end
function ERR(expected, fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then error('expected an error: ' .. expected, 2) end
  if not string.find(tostring(err), expected, 1, true) then
    error(string.format('error %s does not contain %s', show(tostring(err)), show(expected)), 2)
  end
end
"""


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    return tmp_path


def load(directory: Path, body: str, files: dict[str, str] | None = None) -> LuaPolicy:
    for name, text in (files or {}).items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    (directory / "policy.lua").write_text(PRELUDE + body)
    return LuaPolicy(PolicySource.at(directory / "policy.lua"))


@pytest.fixture
def check(policy_dir: Path):
    """Loads a policy of checks; the load fails on the first one that fails."""

    def run(body: str, files: dict[str, str] | None = None) -> LuaPolicy:
        return load(policy_dir, body, files)

    return run


def reject_text(policy: LuaPolicy) -> str:
    verdict = Engine(policy).evaluate(mail())
    assert verdict.code == 550, verdict
    return verdict.text


# kumo.serde ---------------------------------------------------------------------


def test_json_encode_decides_arrays_and_objects_as_kumomta(check) -> None:
    check(r"""
    local J = kumo.serde.json_encode
    EQ(J({1, 2, 3}), '[1,2,3]')
    EQ(J({1, 2, nil, 4}), '[1,2,null,4]')
    EQ(J({1, 2, x = 'dropped'}), '[1,2]')
    EQ(J({}), '{}')
    EQ(J({a = {}}), '{"a":{}}')
    EQ(J({[5] = 'x'}), '{"5":"x"}')
    EQ(J(nil), 'null')
    EQ(J(true), 'true')
    EQ(J('say "hi"\n\1é'), '"say \\"hi\\"\\n\\u0001é"')
    EQ(J({1.0, 0.5, 1e20, 1e16, 1e15, 0.00001, 0.000001, -2.5, 7}),
       '[1.0,0.5,1e20,1e16,1000000000000000.0,0.00001,1e-6,-2.5,7]')
    EQ(J({0/0, math.huge}), '[null,null]')
    -- the documented kumo.string examples compare json_encode text
    EQ(kumo.json_encode(kumo.string.split('Mary had a little lamb', ' ')),
       '["Mary","had","a","little","lamb"]')
    """)


def test_json_encode_pretty_sorts_keys_and_indents_by_two(check) -> None:
    check(r"""
    EQ(kumo.serde.json_encode_pretty({b = {1, {}}, a = {z = 1, y = true}, c = 'x'}),
       '{\n  "a": {\n    "y": true,\n    "z": 1\n  },\n'
         .. '  "b": [\n    1,\n    {}\n  ],\n  "c": "x"\n}')
    EQ(kumo.json_encode_pretty({}), '{}')
    EQ(kumo.json_encode_pretty(5), '5')
    """)


def test_json_encode_refuses_what_serde_cannot_represent(check) -> None:
    check(r"""
    ERR('kumo.serde.json_encode: cannot serialize <function>', kumo.serde.json_encode,
        { f = print })
    local cyclic = {} cyclic[1] = cyclic
    ERR('nested more than 128 levels deep (or cyclic)', kumo.serde.json_encode, cyclic)
    ERR('kumo.json_encode: strings must be valid UTF-8', kumo.json_encode, { '\xff' })
    local wide = {}
    for i = 1, 20 do wide = { wide, wide } end
    ERR('more than 1000000 elements', kumo.serde.json_encode, wide)
    """)


def test_json_parse_nulls_numbers_and_comments(check) -> None:
    check(r"""
    local v = kumo.serde.json_parse([[
      { "a": [1, null, 3], /* a block
           comment */ "b": null, # shell style
        "c": 1.0, // C++ style
        "d": 2, "s": "# not // a comment", "big": 18446744073709551615, "e": {} }
    ]])
    EQ(v.a[1], 1) EQ(v.a[2], nil) EQ(v.a[3], 3)
    EQ(v.b, nil)
    EQ(math.type(v.c), 'float') EQ(math.type(v.d), 'integer')
    EQ(v.s, '# not // a comment')
    EQ(v.big, 18446744073709551615.0)
    EQ(next(v.e), nil)
    EQ(kumo.serde.json_parse('null'), nil)
    EQ(kumo.json_parse('"x"'), 'x')
    ERR('kumo.serde.json_parse: Expecting', kumo.serde.json_parse, '{')
    ERR('kumo.json_parse: NaN is not valid JSON', kumo.json_parse, '[NaN]')
    ERR('kumo.serde.json_parse: Extra data', kumo.serde.json_parse, '1 2')
    ERR('bad argument #1 to kumo.serde.json_parse (string expected, got table)',
        kumo.serde.json_parse, {})
    """)


def test_the_documented_log_record_parses(check) -> None:
    check(r"""
    local r = kumo.serde.json_parse [=[
    { "type": "Delivery", "size": 1047,
      "response": { "code": 250, "enhanced_code": { "class": 2, "subject": 0, "detail": 0 } },
      "feedback_report": null, "meta": {}, "headers": {}, "bogus": null,
      "tls_peer_subject_name": ["C=US","ST=CA","L=SanFrancisco","O=Fort-Funston",
                                "OU=MyOrganizationalUnit","CN=do.havedane.net",
                                "name=EasyRSA","emailAddress=me@myhost.mydomain"] }
    ]=]
    EQ(r.type, 'Delivery') EQ(r.size, 1047) EQ(r.response.enhanced_code.class, 2)
    EQ(r.feedback_report, nil) EQ(r.bogus, nil)
    EQ(#r.tls_peer_subject_name, 8)
    EQ(r.tls_peer_subject_name[8], 'emailAddress=me@myhost.mydomain')
    EQ(kumo.serde.json_encode(r.meta), '{}')
    """)


def test_toml_load_reads_a_data_file_that_joins_the_revision(check, policy_dir: Path) -> None:
    data = 'name = "x"\nports = [25, 587]\n[limits]\nrate = 1.5\nwhen = 1979-05-27T07:32:00Z\n'
    body = r"""
    local t = kumo.serde.toml_load('data/listeners.toml')
    EQ(t.name, 'x') EQ(t.ports[2], 587) EQ(t.limits.rate, 1.5)
    EQ(t.limits.when['$__toml_private_datetime'], '1979-05-27T07:32:00Z')
    local same = kumo.toml_load('/opt/kumomta/etc/policy/data/listeners.toml')
    EQ(same.name, 'x')
    """
    policy = check(body, {"data/listeners.toml": data})
    assert policy.files["data/listeners.toml"] == data.encode()
    (policy_dir / "data/listeners.toml").write_text(data.replace('"x"', '"y"'))
    with pytest.raises(PolicyError, match='got "y", expected "x"'):
        check(body)
    (policy_dir / "data/listeners.toml").write_text(data + "# a comment\n")
    assert check(body).revision != policy.revision


@pytest.mark.parametrize(
    ("call", "path"),
    [
        ("kumo.serde.toml_load", "../x.toml"),
        ("kumo.serde.json_load", "/etc/passwd"),
        ("kumo.serde.yaml_load", "/opt/kumomta/etc/policy/../../../etc/passwd"),
        ("kumo.toml_load", "sub/../../x.toml"),
        ("kumo.json_load", "missing.json"),
    ],
)
def test_loads_outside_the_policy_directory_are_refused(policy_dir: Path, call, path) -> None:
    (policy_dir.parent / "x.toml").write_text("a = 1\n")
    policy = load(
        policy_dir,
        f"""
        kumo.on('smtp_server_mail_from', function()
          local ok, err = pcall({call}, {path!r})
          kumo.reject(550, tostring(ok) .. ' ' .. err)
        end)
        """,
    )
    text = reject_text(policy)
    assert text.startswith(f'false {call}("{path}"): '), text
    if path == "missing.json":
        assert "missing.json" in text
    else:
        assert "not a file of the policy directory" in text, text
    assert set(policy.files) == {"policy.lua"}


def test_toml_parse_and_encode(check) -> None:
    check(r"""
    local t = kumo.serde.toml_parse('a = 1\n[t]\nx = "y"\n[[list]]\nn = 1\n[[list]]\nn = 2\n')
    EQ(t.a, 1) EQ(t.t.x, 'y') EQ(t.list[2].n, 2)
    EQ(kumo.serde.toml_encode({ name = 'x' }), 'name = "x"\n')
    EQ(kumo.toml_encode({ t = { n = 1 } }), '[t]\nn = 1\n')
    local q3 = string.rep('"', 3)
    EQ(kumo.serde.toml_encode_pretty({ s = 'a\nb' }), 's = ' .. q3 .. '\na\nb' .. q3 .. '\n')
    EQ(kumo.serde.toml_parse(kumo.serde.toml_encode({ l = { 1, 2 }, f = 0.5 })).l[2], 2)
    ERR('kumo.serde.toml_encode: only a table with string keys', kumo.serde.toml_encode, { 1, 2 })
    ERR('TOML has no null', kumo.serde.toml_encode, { l = { 1, nil, 3 } })
    ERR("TOML keys must be strings", kumo.toml_encode, { [1.5] = 1 })
    ERR('kumo.serde.toml_parse: ', kumo.serde.toml_parse, 'a = ')
    """)


def test_yaml_parse_reads_yaml_1_2_as_serde_yaml(check) -> None:
    check(
        r"""
    local y = kumo.serde.yaml_parse('a: yes\nb: 2001-01-01\n1: x\nc: .inf\nd: 0x10\n'
      .. 'e: true\nf: ~\ng: 1.5\nl: [1, two]\n')
    EQ(y.a, 'yes') EQ(y.b, '2001-01-01') EQ(y['1'], 'x') EQ(y.c, nil) EQ(y.d, 16)
    EQ(y.e, true) EQ(y.f, nil) EQ(y.g, 1.5) EQ(y.l[2], 'two')
    EQ(kumo.serde.yaml_parse(''), nil)
    EQ(kumo.serde.yaml_encode({ a = 1 }), 'a: 1\n')
    EQ(kumo.serde.yaml_encode({ l = { 'x', 'yes' } }), "l:\n- x\n- 'yes'\n")
    EQ(kumo.serde.yaml_encode('hi'), 'hi\n')
    EQ(kumo.serde.yaml_encode({}), '{}\n')
    EQ(kumo.serde.yaml_load('data.yaml').domains[1], 'example.com')
    ERR('kumo.serde.yaml_parse: ', kumo.serde.yaml_parse, 'a: [')
    ERR('kumo.serde.yaml_parse: ', kumo.serde.yaml_parse, '--- 1\n--- 2\n')
    ERR('kumo.serde.yaml_parse: ', kumo.serde.yaml_parse, '!!python/object:os.system x')
    EQ(kumo.yaml_parse, nil)  -- KumoMTA has no deprecated yaml names
    """,
        {"data.yaml": "domains:\n  - example.com\n"},
    )


def test_yaml_aliases_cannot_blow_up(check) -> None:
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    check(f"ERR('more than 1000000 elements', kumo.serde.yaml_parse, {laughs!r})")


# kumo.string --------------------------------------------------------------------


def test_string_documented_examples(check) -> None:
    check(r"""
    local S, J = kumo.string, kumo.json_encode
    EQ(J(S.rsplit('Mary had a little lamb', ' ')), '["lamb","little","a","had","Mary"]')
    EQ(J(S.rsplitn('Mary had a little lamb', 3, ' ')), '["lamb","little","Mary had a"]')
    EQ(J(S.split('Mary had a little lamb', ' ')), '["Mary","had","a","little","lamb"]')
    EQ(J(S.splitn('Mary had a little lamb', 3, ' ')), '["Mary","had","a little lamb"]')
    EQ(J(S.split_ascii_whitespace 'Mary had a little lamb'), '["Mary","had","a","little","lamb"]')
    EQ(J(S.split_whitespace 'Mary had a little lamb'), '["Mary","had","a","little","lamb"]')
    EQ(S.replace('this is old', 'old', 'new'), 'this is new')
    EQ(S.replacen('foo foo 123 foo', 'foo', 'new', 2), 'new new 123 foo')
    EQ(S.trim '\n Hello\tworld\t\n', 'Hello\tworld')
    EQ(S.trim_end '\n Hello\tworld\t\n', '\n Hello\tworld')
    EQ(S.trim_start '\n Hello\tworld\t\n', 'Hello\tworld\t\n')
    EQ(S.starts_with('hello world', 'hello'), true)
    EQ(S.ends_with('hello world', 'world'), true)
    EQ(S.ends_with('hello world', 'hello'), false)
    """)


def test_string_rust_edge_cases(check) -> None:
    check(r"""
    local S, J = kumo.string, kumo.json_encode
    EQ(J(S.split('abc', '')), '["","a","b","c",""]')
    EQ(J(S.rsplit('abc', '')), '["","c","b","a",""]')
    EQ(J(S.splitn('abc', 2, '')), '["","abc"]')
    EQ(J(S.rsplitn('abc', 3, '')), '["","c","ab"]')
    EQ(J(S.splitn('a,b', 0, ',')), '{}')
    EQ(J(S.rsplit('aaa', 'aa')), '["","a"]')
    EQ(J(S.split('', ',')), '[""]')
    EQ(S.replace('abc', '', '-'), '-a-b-c-')
    EQ(S.replacen('abc', '', '-', 2), '-a-bc')
    EQ(S.replacen('aaa', 'a', 'b', 0), 'aaa')
    -- Unicode White_Space, which U+001C is not; ASCII whitespace has no \v
    EQ(J(S.split_whitespace(' a\u{3000}b \x1c c\u{85}')), '["a","b","\\u001c","c"]')
    EQ(J(S.split_ascii_whitespace(' a\vb \t\r\n\f c')), '["a\\u000bb","c"]')
    EQ(S.trim('\u{2003}x\u{a0}'), 'x')
    EQ(S.trim('\x1cx'), '\x1cx')
    EQ(S.split('1.5.2', '.')[3], '2')
    EQ(S.replace(12345, 3, 'x'), '12x45')
    EQ(S.starts_with('\xff\xfe', '\xff'), true)
    EQ(S.ends_with('x', ''), true)
    ERR('bad argument #1 to kumo.string.split (string expected, got table)', S.split, {}, ',')
    ERR('bad argument #2 to kumo.string.splitn (non-negative integer expected, got -1)',
        S.splitn, 'a', -1, ',')
    ERR('kumo.string.replace: argument #1 is not valid UTF-8', S.replace, 'a\xff', 'a', 'b')
    ERR('kumo.string.replace: the result would be longer than', S.replace,
        string.rep('a', 1000000), '', string.rep('b', 100))
    """)


def test_wrap_as_kumomta(check) -> None:
    check(r"""
    local W = kumo.string.wrap
    EQ(W 'hello', 'hello')
    EQ(W(string.rep('A', 200), 75, 100), string.rep('A', 100) .. '\r\n\t' .. string.rep('A', 100))
    local expected = 'hello there hello there hello there hello there hello there hello there\r\n'
      .. '\thello there hello there hello there hello there'
    EQ(W(string.rep('hello there ', 10), 75, 100), expected)
    EQ(W(string.rep(' hello there', 10), 75, 100), expected)
    EQ(W('hello world', 10, 15), 'hello\r\n\tworld')
    EQ(W('hello world ', 10, 15), 'hello\r\n\tworld')
    EQ(W('hello world foo bar baz woot woot', 10, 15),
       'hello\r\n\tworld foo\r\n\tbar baz\r\n\twoot woot')
    EQ(W('hi there breakmepleaseIamtoolong', 10, 15), 'hi there\r\n\tbreakmepleaseIa\r\n\tmtoolong')
    EQ(W('\xff\xfe \xfd', 2, 5), '\xff\xfe\r\n\t\xfd')
    """)


def test_the_functions_kumomta_documents_are_all_there_or_reported(check) -> None:
    """psl_*, eval_template and normalize_smtp_response need data or engines
    this service does not have; they are absent rather than wrong."""
    check(r"""
    for _, name in ipairs({ 'replace', 'replacen', 'rsplit', 'rsplitn', 'split', 'splitn',
        'split_whitespace', 'split_ascii_whitespace', 'trim', 'trim_start', 'trim_end',
        'starts_with', 'ends_with', 'wrap' }) do
      EQ(type(kumo.string[name]), 'function', name)
    end
    EQ(kumo.string.psl_domain, nil) EQ(kumo.string.eval_template, nil)
    """)


# kumo.encode --------------------------------------------------------------------


def test_encode_vectors_and_strict_decoding(check) -> None:
    check(r"""
    local E = kumo.encode
    local d = '\xaa\xf4\xc6\x1d\xdc\xc5\xe8\xa2\xda\xbe\xde\x0f\x3b\x48\x2c\xd9\xae\xa9\x43\x4d'
    EQ(E.hex_encode(d), 'aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d')
    EQ(E.base32_encode(d), 'VL2MMHO4YXUKFWV63YHTWSBM3GXKSQ2N')
    EQ(E.base32hex_encode(d), 'LBQCC7ESONKA5MLURO7JMI1CR6NAIGQD')
    EQ(E.base64_encode(d), 'qvTGHdzF6KLavt4PO0gs2a6pQ00=')
    EQ(E.base64_nopad_encode(d), 'qvTGHdzF6KLavt4PO0gs2a6pQ00')
    EQ(E.base32_encode('a'), 'ME======') EQ(E.base32_nopad_encode('a'), 'ME')
    EQ(E.base32hex_nopad_encode('a'), 'C4')
    EQ(E.base64url_encode('\xfb\xff'), '-_8=') EQ(E.base64url_nopad_encode('\xfb\xff'), '-_8')
    EQ(E.base64url_nopad_encode(kumo.uuid.parse('69994630-3e27-11ef-91fc-cc28aa0a5c5a').bytes),
       'aZlGMD4nEe-R_MwoqgpcWg')
    -- KumoMTA's own padding test: any number of trailing '='
    local b = 'MmVtYWlsLmxvZwAuY3N2'
    for _, s in ipairs({ b, b .. '=', b .. '===' }) do
      EQ(E.base64_decode(s), '2email.log\0.csv')
    end
    EQ(E.hex_decode('aaf4'), '\xaa\xf4')
    ERR('kumo.encode.hex_decode: invalid symbol at 0', E.hex_decode, 'AA')
    ERR('kumo.encode.hex_decode: invalid length', E.hex_decode, 'abc')
    ERR('kumo.encode.base64_decode: non-zero trailing bits', E.base64_decode, 'QR==')
    ERR('kumo.encode.base64_nopad_decode: invalid symbol at 2', E.base64_nopad_decode, 'QQ==')
    ERR('kumo.encode.base32_decode: invalid symbol at 0', E.base32_decode, 'me======')
    ERR('kumo.encode.base64_decode: invalid symbol', E.base64_decode, 'QQ\n')
    ERR('kumo.encode.base64_encode: parameter must be a string, got number', E.base64_encode, 5)
    """)


def test_every_variant_round_trips_every_byte(check) -> None:
    check(r"""
    local all = {}
    for b = 0, 255 do all[#all + 1] = string.char(b) end
    all = table.concat(all)
    for _, name in ipairs({ 'base32', 'base32_nopad', 'base32hex', 'base32hex_nopad', 'base64',
                            'base64_nopad', 'base64url', 'base64url_nopad', 'hex' }) do
      for n = 0, 7 do
        local s = all:sub(1, 249 + n)
        EQ(kumo.encode[name .. '_decode'](kumo.encode[name .. '_encode'](s)), s, name)
      end
    end
    """)


def test_charsets(check) -> None:
    check(r"""
    local E = kumo.encode
    EQ(E.charset_decode('iso-8859-1', '\xe9t\xe9'), 'été')
    EQ(E.hex_encode(E.charset_encode('windows-1252', 'é€')), 'e980')
    EQ(E.hex_encode(E.charset_encode('shift_jis', 'テ')), '8365')
    EQ(E.charset_encode('us-ascii', 'aéb'), 'ab')
    ERR('kumo.encode.charset_encode: input string did not encode into us-ascii bytes',
        E.charset_encode, 'us-ascii', 'é', false)
    ERR('kumo.encode.charset_decode: input string did not decode from utf-8 bytes',
        E.charset_decode, 'utf-8', '\xff')
    ERR('kumo.encode.charset_decode: unknown charset rot13', E.charset_decode, 'rot13', 'x')
    """)


# kumo.digest --------------------------------------------------------------------


def test_digest_documented_binary_result(check) -> None:
    check(r"""
    local d = kumo.digest.sha1 'hello'
    EQ(tostring(d), d.hex)
    EQ(d.hex, 'aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d')
    EQ(d.bytes, '\xaa\xf4\xc6\x1d\xdc\xc5\xe8\xa2\xda\xbe\xde\x0f\x3b\x48\x2c\xd9\xae\xa9\x43\x4d')
    EQ(d.base32, 'VL2MMHO4YXUKFWV63YHTWSBM3GXKSQ2N')
    EQ(d.base32_nopad, 'VL2MMHO4YXUKFWV63YHTWSBM3GXKSQ2N')
    EQ(d.base32hex, 'LBQCC7ESONKA5MLURO7JMI1CR6NAIGQD')
    EQ(d.base32hex_nopad, 'LBQCC7ESONKA5MLURO7JMI1CR6NAIGQD')
    EQ(d.base64, 'qvTGHdzF6KLavt4PO0gs2a6pQ00=')
    EQ(d.base64_nopad, 'qvTGHdzF6KLavt4PO0gs2a6pQ00')
    EQ(d.base64url, 'qvTGHdzF6KLavt4PO0gs2a6pQ00=')
    EQ(d.base64url_nopad, 'qvTGHdzF6KLavt4PO0gs2a6pQ00')
    """)


def test_digest_and_hmac_vectors(check) -> None:
    check(
        r"""
    local D = kumo.digest
    EQ(D.crc32('something').hex, '09da31fb')
    EQ(D.sha1('foo').hex, '0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33')
    EQ(D.sha3_384('foo').hex,
       '665551928d13b7d84ee02734502b018d896a0fb87eed5adb4c87ba91bbd6489410e11b0fbcc06ed7d0ebad559e5d3bb5')
    EQ(D.sha256('').hex, 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
    EQ(D.sha224('').hex, 'd14a028c2a3a2bc9476102bb288234c415a2b01f828ea62ac5b3e42f')
    EQ(D.sha512_256('').hex, 'c672b8d1ef56ed28ab87c3622c5114069bdd3ad7b8f9737498d0c01ecef0967a')
    local key = { key_data = 'your key' }
    EQ(D.hmac_sha1(key, 'your message').hex, '317d0dfd868a5c06c9444ac1328aa3e2bfd29fb2')
    EQ(D.hmac_sha224(key, 'your message').hex,
       '991ff8089bd2a781d10c0568cbf2717794ac7b7fbcc9db049f19fc61')
    EQ(D.hmac_sha256(key, 'your message').hex,
       '87fc1cec5c02f0991ae80f50e98eb2eb5213d07fc40417682a74448ac1deb07c')
    EQ(D.hmac_sha384(key, 'your message').hex,
       'cd274957b95ce192d41dd52f83fd2eb9277aa2fa210ec798ee16e978801a89b7e7b956af3976d1a50a60ece87c7b2a66')
    EQ(D.hmac_sha512(key, 'your message').hex,
       '2f5ddcdbd062a5392f07b0cd0262bf52c21bfb3db513296240cca8d5accc09d18d96be0a94995be4494c032f1eda946ad549fb61ccbe985d160f0b2f9588d34b')
    EQ(D.hmac_sha256('secret.key', 'your message').hex, D.hmac_sha256(key, 'your message').hex)
    """,
        {"secret.key": "your key"},
    )


def test_digest_arguments_concatenate_and_non_strings_are_json(check) -> None:
    check(r"""
    local D = kumo.digest
    EQ(D.sha256('a', 'b').hex, D.sha256('ab').hex)
    EQ(D.sha256({ 1, 2 }).hex, D.sha256('[1,2]').hex)
    EQ(D.sha256(nil, 1, 2.0, true).hex, D.sha256('null12.0true').hex)
    EQ(D.sha256({ k = 'v' }, 'x').hex, D.sha256('{"k":"v"}x').hex)
    EQ(D.sha256('\xff\0').hex, 'ea5dbf9596d187e9500f23e9a680109475341cf4e81f7e043f7d97152c10772f')
    EQ(#D.sha256('\xff\0').bytes, 32)
    EQ(D.crc32().hex, '00000000')
    ERR('kumo.digest.sha256: cannot serialize <function>', D.sha256, print)
    ERR('kumo.digest.hmac_sha256: vault key sources are not supported here',
        D.hmac_sha256, { vault_path = 'x' }, 'm')
    ERR('not a file of the policy directory', D.hmac_sha256, '/etc/passwd', 'm')
    ERR('bad argument #1 to kumo.digest.hmac_sha256 (KeySource expected', D.hmac_sha256, 5, 'm')
    """)


# kumo.uuid ----------------------------------------------------------------------


def test_uuid_documented_object(check) -> None:
    check(r"""
    local u = kumo.uuid.parse '69994630-3e27-11ef-91fc-cc28aa0a5c5a'
    EQ(tostring(u), '69994630-3e27-11ef-91fc-cc28aa0a5c5a')
    EQ(u.hyphenated, '69994630-3e27-11ef-91fc-cc28aa0a5c5a')
    EQ(u.simple, '699946303e2711ef91fccc28aa0a5c5a')
    EQ(u.braced, '{69994630-3e27-11ef-91fc-cc28aa0a5c5a}')
    EQ(u.urn, 'urn:uuid:69994630-3e27-11ef-91fc-cc28aa0a5c5a')
    EQ(u.bytes, '\x69\x99\x46\x30\x3e\x27\x11\xef\x91\xfc\xcc\x28\xaa\x0a\x5c\x5a')
    EQ(kumo.uuid.parse('{69994630-3e27-11ef-91fc-cc28aa0a5c5a}').hyphenated, u.hyphenated)
    EQ(kumo.uuid.parse('urn:uuid:69994630-3E27-11EF-91FC-CC28AA0A5C5A').hyphenated, u.hyphenated)
    EQ(kumo.uuid.parse('699946303e2711ef91fccc28aa0a5c5a').hyphenated, u.hyphenated)
    ERR('kumo.uuid.parse("6999-4630-3e27-11ef-91fc-cc28aa0a5c5a"): expected 32 hex digits',
        kumo.uuid.parse, '6999-4630-3e27-11ef-91fc-cc28aa0a5c5a')
    ERR('kumo.uuid.parse("69994630-3e27-11ef-91fc-cc28aa0a5c5g")', kumo.uuid.parse,
        '69994630-3e27-11ef-91fc-cc28aa0a5c5g')
    """)


def test_new_uuids_have_their_version_and_order(check) -> None:
    check(r"""
    for _, v in ipairs({ 1, 4, 6, 7 }) do
      local u = kumo.uuid['new_v' .. v]()
      EQ(u.hyphenated:sub(15, 15), tostring(v), 'version')
      assert(u.hyphenated:sub(20, 20):match('[89ab]'), 'variant')
      EQ(#u.bytes, 16)
      EQ(kumo.uuid.parse(tostring(u)).simple, u.simple)
    end
    local last = kumo.uuid.new_v7().simple
    for _ = 1, 500 do
      local u = kumo.uuid.new_v7().simple
      assert(u > last, 'v7 in order') last = u
    end
    local a = kumo.uuid.new_v6().simple
    assert(kumo.uuid.new_v6().simple > a, 'v6 sorts by time')
    assert(kumo.uuid.new_v4().simple ~= kumo.uuid.new_v4().simple)
    """)


def test_objects_survive_memoize(check) -> None:
    check(r"""
    local make = kumo.memoize(function()
      return { d = kumo.digest.sha1 'hello',
               u = kumo.uuid.parse '69994630-3e27-11ef-91fc-cc28aa0a5c5a',
               t = kumo.time.with_ymd_hms(2000, 1, 2, 3, 4, 5),
               delta = kumo.time.parse_duration '5m' }
    end, { name = 'test_kumo_stdlib.objects', ttl = '1 minute', capacity = 4 })
    make()
    local hit = make()
    EQ(tostring(hit.d), 'aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d')
    EQ(hit.d.base32hex_nopad, 'LBQCC7ESONKA5MLURO7JMI1CR6NAIGQD')
    EQ(tostring(hit.u), '69994630-3e27-11ef-91fc-cc28aa0a5c5a')
    EQ(hit.u.urn, 'urn:uuid:69994630-3e27-11ef-91fc-cc28aa0a5c5a')
    EQ(hit.t, kumo.time.with_ymd_hms(2000, 1, 2, 3, 4, 5))
    EQ(hit.t.rfc3339, '2000-01-02T03:04:05+00:00')
    EQ(hit.delta.human, '5m')
    """)


# kumo.time ----------------------------------------------------------------------


def test_time_documented_examples(check) -> None:
    """KumoMTA's with_ymd_hms example and its mod-time test."""
    check(r"""
    local t = kumo.time.with_ymd_hms(2000, 01, 02, 03, 04, 05)
    EQ(tostring(t), '2000-01-02 03:04:05 UTC')
    EQ(t.year, 2000) EQ(t.month, 1) EQ(t.day, 2) EQ(t.hour, 3) EQ(t.minute, 4) EQ(t.second, 5)
    EQ(t.unix_timestamp, 946782245) EQ(t.unix_timestamp_millis, 946782245000)
    EQ(t.rfc2822, 'Sun, 2 Jan 2000 03:04:05 +0000')
    EQ(t.rfc3339, '2000-01-02T03:04:05+00:00')
    assert(kumo.time.now() ~= t)
    EQ(kumo.time.parse_rfc2822(t.rfc2822), t)
    EQ(kumo.time.parse_rfc3339(t.rfc3339), t)
    EQ(kumo.time.from_unix_timestamp(t.unix_timestamp), t)
    EQ(kumo.time.parse_rfc2822 'Sun, 2 Jan 2000 03:04:05 UTC', t)
    EQ(t:format '%H:%M:%S%', '03:04:05%')
    local unix_epoch = kumo.time.from_unix_timestamp(0)
    local half_second = kumo.time.from_unix_timestamp(0.5)
    EQ(tostring(half_second), '1970-01-01 00:00:00.500 UTC')
    local delta = half_second - unix_epoch
    EQ(delta.seconds, 0.5) EQ(delta.human, '500ms')
    EQ(tostring(half_second + delta), '1970-01-01 00:00:01 UTC')
    EQ(tostring(half_second - kumo.time.parse_duration(0.5)), '1970-01-01 00:00:00 UTC')
    local d3 = delta + delta + delta
    EQ(d3.seconds, 1.5)
    local d1 = d3 - delta
    EQ(d1.seconds, 1.0) EQ(d1.nanoseconds, 1000000000) EQ(d1.microseconds, 1000000)
    EQ(d1.milliseconds, 1000) EQ(d1.human, '1s')
    EQ(kumo.time.parse_duration(2.5).seconds, 2.5)
    EQ(kumo.time.parse_duration(2).seconds, 2)
    EQ(kumo.time.parse_duration(2), kumo.time.parse_duration '2s')
    local d = kumo.time.parse_duration '5 mins'
    EQ(d.seconds, 300) EQ(d.human, '5m') EQ(tostring(d), '5m')
    EQ((kumo.time.parse_duration '10 seconds' - kumo.time.parse_duration(20)).seconds, -10)
    """)


def test_time_texts_and_formats(check) -> None:
    check(r"""
    local t = kumo.time.parse_rfc3339('2000-01-02T03:04:05.123456+01:30')
    EQ(t.rfc3339, '2000-01-02T01:34:05.123456+00:00')
    EQ(tostring(t), '2000-01-02 01:34:05.123456 UTC')
    EQ(t.unix_timestamp_millis, 946776845123)
    EQ(tostring(kumo.time.from_unix_timestamp(1.000000001)), '1970-01-01 00:00:01.000000001 UTC')
    EQ(kumo.time.parse_rfc3339('2000-01-02t03:04:05z'), kumo.time.with_ymd_hms(2000, 1, 2, 3, 4, 5))
    local w = kumo.time.with_ymd_hms(2000, 1, 2, 3, 4, 5)
    EQ(w:format('%Y-%m-%d %a %A %b %B %e %j %U %W %V %G %I %l %p %P %s'),
       '2000-01-02 Sun Sunday Jan January  2 002 01 00 52 1999 03  3 AM am 946782245')
    EQ(w:format('%z %:z %Z %.f|%.3f|%f %-d %_m %D %T %R %F %c %+ %% %Q'),
       '+0000 +00:00 UTC |.000|000000000 2  1 01/02/00 03:04:05 03:04 2000-01-02 '
         .. 'Sun Jan  2 03:04:05 2000 2000-01-02T03:04:05+00:00 % %Q')
    EQ(kumo.time.parse_duration('1h 30m').human, '1h 30m')
    EQ(kumo.time.parse_duration(90061.000001).human, '1day 1h 1m 1s 1us')
    EQ(kumo.time.parse_duration('2 years').human, '2years')
    EQ(kumo.time.parse_duration(0).human, '0s')
    local back = kumo.time.from_unix_timestamp(0) - kumo.time.from_unix_timestamp(0.5)
    EQ(back.milliseconds, -500) EQ(back.seconds, -0.5)
    ERR('a negative TimeDelta has no human form', function() return back.human end)
    ERR('kumo.time.with_ymd_hms: no such date and time', kumo.time.with_ymd_hms,
        2000, 2, 30, 0, 0, 0)
    ERR('kumo.time.parse_rfc3339: "nope": not an RFC 3339 timestamp', kumo.time.parse_rfc3339,
        'nope')
    ERR('kumo.time.parse_rfc2822: "nope": not an RFC 2822 date', kumo.time.parse_rfc2822, 'nope')
    ERR('kumo.time.parse_duration: ', kumo.time.parse_duration, 'five')
    ERR('kumo.time.parse_duration: ', kumo.time.parse_duration, -1.5)
    ERR('only a TimeDelta can be added to a Time', function() return w + w end)
    ERR('kumo.time.from_unix_timestamp: timestamp must be either an integer or floating point',
        kumo.time.from_unix_timestamp, '0')
    ERR('out of range', kumo.time.from_unix_timestamp, 1e15)
    """)


def test_timer_and_sleep(policy_dir: Path) -> None:
    policy = load(
        policy_dir,
        r"""
        local ok, err = pcall(function() kumo.time.sleep(1) end)
        LOAD = err
        kumo.on('smtp_server_mail_from', function()
          local timer = kumo.time.start_timer 'op'
          local since = kumo.time.now()
          kumo.time.sleep(0.05)
          local took = timer:done()
          local elapsed = since.elapsed.seconds
          kumo.reject(550, string.format('%s %s %s %s', tostring(took >= 0.05),
            tostring(timer:done()), tostring(elapsed >= 0.05), LOAD))
        end)
        """,
    )
    text = reject_text(policy)
    assert re.fullmatch(
        r"true nil true policy\.lua:\d+: kumo\.time\.sleep can only be called from a handler, "
        r"not while the policy loads",
        text,
    ), text


def test_errors_point_at_the_policy_line(policy_dir: Path) -> None:
    with pytest.raises(
        PolicyError, match=r"policy\.lua:\d+: kumo\.serde\.toml_load\(\"\.\./x\.toml\"\)"
    ):
        load(policy_dir, "local x = 1\nkumo.serde.toml_load('../x.toml')\n")
    with pytest.raises(PolicyError, match=r"policy\.lua:\d+: kumo\.string\.split: argument #1"):
        load(policy_dir, "kumo.string.split('\\xff', ',')\n")
