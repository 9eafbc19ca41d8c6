"""The message object beyond headers and meta: msg:set_data, import_x_headers,
remove_x_headers, and the address headers (from_header, to_header,
get_address_header) with KumoMTA's AddressHeader fields. Through the daemon
and edge over SMTP, checking the stored bytes."""

from __future__ import annotations

import json

import pytest

from policyd.extensions.message import parse
from policyd.header_values import decoded, encoded
from tests.smtpclient import RawClient


def send(port: int, body: bytes) -> bytes:
    with RawClient(port) as client:
        client.reply()
        client.command(b"EHLO client.test")
        client.command(b"MAIL FROM:<s@example.com>")
        client.command(b"RCPT TO:<r@example.com>")
        assert client.command(b"DATA").startswith(b"354")
        client.send(body + b".\r\n")
        return client.reply()


def test_set_data_replaces_the_message_and_later_header_changes_apply(stack_factory) -> None:
    stack = stack_factory(r"""
kumo.on('smtp_server_data', function(msg)
  msg:append_header('X-Lost', 'made before set_data')
  msg:set_data('Subject: replaced\r\nX-Old: ' .. #msg:get_data() .. '\r\n\r\nnew body\r\n')
  msg:prepend_header('X-After', msg:get_first_named_header_value('Subject'))
end)
kumo.on('smtp_server_message_received', function(msg)
  msg:append_header('X-Seen', tostring(msg:get_first_named_header_value('X-Lost')))
end)
""")
    body = b"Subject: original\r\n\r\nold body\r\n"
    assert send(stack.port, body).startswith(b"250 OK ids=")
    (entry,) = stack.stored_entries()
    assert entry.message == (
        b"X-After: replaced\r\nSubject: replaced\r\nX-Old: %d\r\nX-Seen: nil\r\n\r\nnew body\r\n"
        % (len(body) + len(b"X-Lost: made before set_data\r\n"))
    )


def test_set_data_refuses_what_is_not_a_string(stack_factory) -> None:
    stack = stack_factory("kumo.on('smtp_server_data', function(msg) msg:set_data(42) end)")
    assert send(stack.port, b"Subject: x\r\n\r\nbody\r\n") == (
        b"421 4.3.0 mx.test technical difficulties\r\n"
    )
    (error,) = [e for e in stack.daemon.log_lines() if e.get("msg") == "policy error"]
    assert "msg:set_data: data must be a string, got number" in error["error"]
    assert stack.stored_entries() == []


X_HEADERS = b"X-Campaign-ID: 12345\r\nX-Mailer: foobar\r\nSubject: the subject\r\n\r\nThe body\r\n"


def test_import_x_headers_puts_them_in_message_meta(stack_factory) -> None:
    stack = stack_factory(r"""
kumo.on('smtp_server_data', function(msg)
  if msg:get_first_named_header_value('Subject') == 'the subject' then
    msg:import_x_headers()
  else
    msg:import_x_headers { 'x-campaign-id', 'Subject' }
  end
end)
kumo.on('smtp_server_message_received', function(msg)
  msg:prepend_header('X-Meta', string.format('%s %s %s', tostring(msg:get_meta('x_campaign_id')),
    tostring(msg:get_meta('x_mailer')), tostring(msg:get_meta('subject'))))
end)
""")
    send(stack.port, X_HEADERS)
    send(stack.port, X_HEADERS.replace(b"the subject", b"other"))
    got = sorted(e.message.split(b"\r\n", 1)[0] for e in stack.stored_entries())
    assert got == [b"X-Meta: 12345 foobar nil", b"X-Meta: 12345 nil other"]


def test_remove_x_headers_all_or_those_named(stack_factory) -> None:
    stack = stack_factory(r"""
kumo.on('smtp_server_data', function(msg)
  if msg:get_first_named_header_value('Subject') == 'the subject' then
    msg:remove_x_headers()
  else
    msg:remove_x_headers { 'x-campaign-id' }
  end
end)
""")
    send(stack.port, X_HEADERS)
    send(stack.port, X_HEADERS.replace(b"the subject", b"other"))
    got = sorted(e.message for e in stack.stored_entries())
    assert got == [
        b"Subject: the subject\r\n\r\nThe body\r\n",
        b"X-Mailer: foobar\r\nSubject: other\r\n\r\nThe body\r\n",
    ]


ADDRESSES = r"""
local function show(h)
  if h == nil then return 'nil' end
  local ok, email = pcall(function() return h.email end)
  local parts = { tostring(#h.list), ok and tostring(email) or 'error: ' .. tostring(email) }
  for _, a in ipairs(h.list) do
    parts[#parts + 1] = string.format('%s|%s|%s|%s', tostring(a.name), tostring(a.email),
      tostring(a.user), tostring(a.domain))
  end
  return table.concat(parts, ' ; ')
end
kumo.on('smtp_server_message_received', function(msg)
  msg:prepend_header('X-Cc', show(msg:get_address_header('cc')))
  msg:prepend_header('X-To', show(msg:to_header()))
  msg:prepend_header('X-From', show(msg:from_header()))
  msg:prepend_header('X-From-Json', tostring(msg:from_header()))
end)
"""


def test_address_headers_have_kumomta_s_fields(stack_factory) -> None:
    stack = stack_factory(ADDRESSES)
    body = (
        b"From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <jorg@Example.COM>\r\n"
        b'To: a@one.example, "Smith, Bo" <bo@two.example>,\r\n\tfriends: c@three.example;\r\n'
        b"Subject: addresses\r\n\r\nbody\r\n"
    )
    assert send(stack.port, body).startswith(b"250 OK ids=")
    (entry,) = stack.stored_entries()
    headers = dict(line.split(": ", 1) for line in entry.message.decode().split("\r\n")[:4])
    assert (
        headers["X-From"] == "1 ; jorg@Example.COM ; Jörg Müller|jorg@Example.COM|jorg|Example.COM"
    )
    assert headers["X-To"].startswith("3 ; error: ")
    assert "holds 3 addresses, not a single one" in headers["X-To"]
    assert headers["X-To"].endswith(
        " ; nil|a@one.example|a|one.example ; Smith, Bo|bo@two.example|bo|two.example"
        " ; nil|c@three.example|c|three.example"
    )
    assert headers["X-Cc"] == "nil"
    assert json.loads(headers["X-From-Json"]) == [
        {"name": "Jörg Müller", "address": "jorg@Example.COM"}
    ]


def test_the_parser_decodes_quoted_local_parts_and_refuses_garbage() -> None:
    (quoted,) = parse('"first last"@example.com')
    assert quoted["user"] == "first last" and quoted["domain"] == "example.com"
    assert parse("") == [] and parse("undisclosed-recipients:;") == []
    assert [e["email"] for e in parse("a@b.example, ;")] == ["a@b.example"]
    for garbage in ("no address here at all ;;;", "<<<", "local-part-only"):
        with pytest.raises(ValueError, match="no address in"):
            parse(garbage)


def test_encoded_headers_are_folded_and_getters_decode_them(stack_factory) -> None:
    stack = stack_factory(r"""
local long = string.rep('word ', 40)
kumo.on('smtp_server_data', function(msg)
  msg:prepend_header('X-Long', long, true)
  msg:append_header('X-Name', 'Grüße aus Köln', true)
  msg:append_header('X-Count', 42)
  msg:append_header('X-Back', msg:get_first_named_header_value('Subject')
    .. ' / ' .. msg:get_first_named_header_value('X-Name'))
end)
""")
    body = b"Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\nbody\r\n"
    assert send(stack.port, body).startswith(b"250 OK ids=")
    (entry,) = stack.stored_entries()
    headers, _, rest = entry.message.partition(b"\r\n\r\n")
    assert rest == b"body\r\n"
    lines = headers.split(b"\r\n")
    assert lines[0].startswith(b"X-Long: word word")
    folded = [lines[0]]
    for line in lines[1:]:
        if not line.startswith(b" "):
            break
        folded.append(line)
    assert len(folded) == 3 and all(len(line) <= 78 for line in folded)
    assert b" ".join(line.strip() for line in folded) == b"X-Long: " + b"word " * 39 + b"word"
    assert b"X-Name: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=" in lines
    assert b"X-Count: 42" in lines
    assert "X-Back: café / Grüße aus Köln".encode() in lines


def test_header_values_that_are_not_text_or_not_one_line_are_refused(stack_factory) -> None:
    stack = stack_factory(r"""
kumo.on('smtp_server_data', function(msg)
  msg:prepend_header('X-Bad', 'one\r\nX-Injected: two', true)
end)
""")
    assert send(stack.port, b"Subject: x\r\n\r\nbody\r\n").startswith(b"421 4.3.0")
    (error,) = [e for e in stack.daemon.log_lines() if e.get("msg") == "policy error"]
    assert 'msg:prepend_header("X-Bad"): value must not contain CR or LF' in error["error"]
    assert stack.stored_entries() == []


def test_encoding_cuts_ascii_without_whitespace_at_900_columns() -> None:
    value = encoded("X-Token", "a" * 2000)
    assert value.split("\r\n ") == ["a" * 900, "a" * 900, "a" * 200]
    assert decoded(encoded("X-Name", "naïve")) == "naïve"
    assert decoded("=?bogus-charset?q?x?=") == "=?bogus-charset?q?x?="


IMPORTED = (
    b"Received: from a\r\nReceived: from b\r\nX-Campaign-Id: 42\r\nX-Mailer: m1\r\n"
    b"x-mailer: m2\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nList-Help: <mailto:h@example.com>\r\n"
    b"\r\nbody\r\n"
)


def test_import_headers_captures_names_and_patterns_as_kumomta(stack_factory) -> None:
    stack = stack_factory(r"""
kumo.on('smtp_server_message_received', function(msg)
  msg:import_headers {
    { name = 'X-Campaign-Id', target = 'campaign_id' },
    { name = 'x-*', match = 'first', transform = 'camel_case', remove = true },
    { name = 'Received', match = 'all' },
    { name = 'Subject', transform = 'kebab_case' },
    { name = 'list-help', transform = 'pascal_case' },
    { name = 'Missing', match = 'all' },
  }
  local received = msg:get_meta('received')
  msg:append_header('X-Received-Count', #received)
  msg:append_header('X-Last-Received', received[#received])
  local out = {}
  for _, key in ipairs { 'campaign_id', 'xMailer', 'subject', 'ListHelp', 'missing' } do
    out[#out + 1] = key .. '=' .. kumo.serde.json_encode(msg:get_meta(key))
  end
  msg:append_header('X-Meta', table.concat(out, ' '))
end)
""")
    assert send(stack.port, IMPORTED).startswith(b"250 OK ids=")
    (entry,) = stack.stored_entries()
    headers = entry.message.split(b"\r\n\r\n")[0].split(b"\r\n")
    # the first spec matching a header wins: X-Campaign-Id is kept, the
    # X-Mailer fields (any case) are removed; our own Received: comes first
    assert [h for h in headers if h.lower().startswith(b"x-")] == [
        b"X-Campaign-Id: 42",
        b"X-Received-Count: 3",
        b"X-Last-Received: from b",
        'X-Meta: campaign_id="42" xMailer="m1" subject="café" '
        'ListHelp="<mailto:h@example.com>" missing=null'.encode(),
    ]


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("{ name = '*' }", "only a single trailing * is supported"),
        ("{ name = 'X-*-Id' }", "only a single trailing * is supported"),
        ("{ name = 'X-*', target = 'k' }", "cannot be used with a wildcard pattern"),
        ("{ name = 'Subject', match = 'middle' }", "match must be first, last or all"),
        ("{ name = 'Subject', transform = 'shout' }", "transform must be snake_case"),
    ],
)
def test_import_headers_refuses_bad_specs(stack_factory, spec: str, error: str) -> None:
    call = "msg:import_headers { " + spec + " }"
    stack = stack_factory(f"kumo.on('smtp_server_message_received', function(msg) {call} end)")
    assert send(stack.port, IMPORTED).startswith(b"421 4.3.0")
    (logged,) = [e for e in stack.daemon.log_lines() if e.get("msg") == "policy error"]
    assert "msg:import_headers: spec 1: " in logged["error"] and error in logged["error"]
