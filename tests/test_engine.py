"""The Lua engine in-process: kumo API details, metadata encoding, message object.

These run the real engine (lupa, the sandbox, the kumo module) without gRPC; the
SMTP-level behaviour is covered through real processes elsewhere.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from policy.v1 import policy_pb2 as pb
from policy.v1.headers import apply_header_changes
from policyd.bridge import Bridge
from policyd.evaluate import Evaluator
from policyd.inputs import predefined_meta
from policyd.runtime import LuaPolicy
from policyd.source import PolicyError, PolicySource


class Engine:
    """An evaluator driven synchronously, for tests."""

    def __init__(self, policy: LuaPolicy) -> None:
        self.policy = policy
        self.evaluator = Evaluator(policy, Bridge())

    def evaluate(self, request: pb.EvaluateRequest) -> pb.Verdict:
        return asyncio.run(self.evaluator.evaluate(request))


@pytest.fixture
def load(write_policy):
    def make(text: str) -> Engine:
        return Engine(LuaPolicy(PolicySource.at(write_policy(text))))

    return make


def request(event: str, **kw: Any) -> pb.EvaluateRequest:
    return pb.EvaluateRequest(
        event=event,
        client=pb.Client(edge_id="edge-1", hostname="mx.test", labels={"region": "eu"}),
        session=pb.Session(id="s", peer_ip="::1", peer_port=4000, local_ip="::1", local_port=25),
        **kw,
    )


def mail(sender: str = "a@b.example", **kw) -> pb.EvaluateRequest:
    return request("smtp_server_mail_from", mail_from=pb.MailFromArgs(sender=sender), **kw)


def test_predefined_meta_formats_ipv6_and_includes_labels() -> None:
    meta = predefined_meta(mail())
    assert meta["received_from"] == "[::1]:4000"
    assert meta["received_via"] == "[::1]:25"
    assert meta["region"] == "eu" and meta["edge_id"] == "edge-1"
    assert "ehlo_domain" not in meta and "tls_cipher" not in meta


@pytest.mark.parametrize(
    ("lua", "stored"),
    [
        ("'text'", "text"),
        ("42", 42),
        ("-1.5", -1.5),
        ("0.1", 0.1),
        ("1e300", 1e300),
        ("true", True),
        ("{1, 2, 'x'}", [1, 2, "x"]),
        ("{a = {b = {c = 'd'}}}", {"a": {"b": {"c": "d"}}}),
        ("{}", {}),
        ("'quote \" back \\\\ ctl \\1 nl \\n ü'", 'quote " back \\ ctl \x01 nl \n ü'),
        ("nil", None),
    ],
)
def test_meta_values_are_json(load, lua: str, stored) -> None:
    ev = load(f"kumo.on('smtp_server_mail_from', function(s, m) m:set_meta('x_v', {lua}) end)")
    verdict = ev.evaluate(mail())
    assert verdict.action == pb.ACTION_CONTINUE
    assert json.loads(verdict.meta_set["x_v"]) == stored


@pytest.mark.parametrize(
    ("lua", "message"),
    [
        ("0/0", "finite"),
        ("function() end", "cannot store a function"),
        ("{[true] = 1}", "string keys"),
        ("'\\xff'", "valid UTF-8"),
        ("(function() local t = {} t.t = t return t end)()", "nested too deeply"),
    ],
)
def test_meta_values_that_are_not_json_are_errors_at_the_policy_line(load, lua, message) -> None:
    ev = load(f"kumo.on('smtp_server_mail_from', function(s, m)\n  m:set_meta('x', {lua})\nend)")
    verdict = ev.evaluate(mail())
    assert verdict.action == pb.ACTION_ERROR
    assert verdict.error.startswith('policy.lua:2: conn_meta:set_meta("x"): ')
    assert message in verdict.error


def test_meta_from_earlier_events_is_decoded_and_overrides_predefined(load) -> None:
    ev = load(
        "kumo.on('smtp_server_mail_from', function(s, m)\n"
        "  kumo.reject(550, m:get_meta('x_list')[2] .. m:get_meta('hostname') ..\n"
        "    tostring(m:get_meta('x_null')) .. m:get_meta('region'))\nend)"
    )
    verdict = ev.evaluate(
        mail(conn_meta={"x_list": '["a", "b"]', "hostname": '"override"', "x_null": "null"})
    )
    assert verdict.text == "boverridenileu"


def test_envelope_addresses(load) -> None:
    ev = load(
        "kumo.on('smtp_server_mail_from', function(s)\n"
        "  kumo.reject(550, ('[%s][%s][%s][%s]'):format(s.user, s.domain, s.email, tostring(s)))\n"
        "end)"
    )
    text = ev.evaluate(mail("user@example.com")).text
    assert text == "[user][example.com][user@example.com][user@example.com]"
    assert ev.evaluate(mail("")).text == "[][][][]"
    assert ev.evaluate(mail("postmaster")).text == "[postmaster][][postmaster][postmaster]"


def test_kumo_on_inside_a_handler_is_an_error(load) -> None:
    ev = load("kumo.on('smtp_server_mail_from', function() kumo.on('smtp_server_ehlo', print) end)")
    verdict = ev.evaluate(mail())
    assert verdict.action == pb.ACTION_ERROR
    assert "kumo.on can only be called while the policy loads" in verdict.error


def test_events_without_handler_continue_with_revision_and_decision_id(load) -> None:
    ev = load("kumo.on('smtp_server_rcpt_to', function() kumo.reject(550, 'no') end)")
    verdict = ev.evaluate(mail())
    assert verdict.action == pb.ACTION_CONTINUE
    assert verdict.revision == ev.policy.revision and verdict.decision_id


def test_a_policy_without_handlers_is_valid(load) -> None:
    assert load("-- nothing").policy.handled_events == ()


MESSAGE = (
    b"Received: from a\r\n\tby b\r\nSubject: Hi\r\nsubject: second\r\nX-Drop: 1\r\n"
    b"x-drop: 2\r\n folded\r\nTo: r@example.com\r\n\r\nbody\r\nX-Drop: not a header\r\n"
)


@pytest.mark.parametrize(
    "ops",
    [
        "msg:prepend_header('X-A', 'one')",
        "msg:append_header('X-A', 'one') msg:append_header('X-B', 'two')",
        "msg:remove_all_named_headers('X-DROP')",
        "msg:remove_all_named_headers('x-drop') msg:prepend_header('X-Drop', 'new')",
        "msg:remove_all_named_headers('received') msg:append_header('Z', 'ü')",
        "",
    ],
)
def test_edge_applies_header_changes_exactly_as_the_policy_saw_them(load, ops) -> None:
    ev = load(
        f"kumo.on('smtp_server_data', function(msg) {ops}\n"
        "  msg:set_meta('x_data', msg:get_data())\nend)"
    )
    verdict = ev.evaluate(
        request(
            "smtp_server_data",
            message=pb.MessageArgs(message_id="m", sender="a@b", recipients=["c@d"], data=MESSAGE),
        )
    )
    assert verdict.action == pb.ACTION_CONTINUE, verdict.error
    seen_by_policy = json.loads(verdict.msg_meta_set["x_data"]).encode()
    assert apply_header_changes(MESSAGE, verdict.header_changes) == seen_by_policy


def test_message_accessors(load) -> None:
    ev = load(
        r"""
kumo.on('smtp_server_data', function(msg)
  local out = {}
  out[#out + 1] = msg:id()
  out[#out + 1] = tostring(msg:sender())
  out[#out + 1] = tostring(msg:recipient())
  out[#out + 1] = #msg:recipient_list()
  out[#out + 1] = msg:get_first_named_header_value('SUBJECT')
  out[#out + 1] = table.concat(msg:get_all_named_header_values('subject'), '|')
  out[#out + 1] = msg:get_first_named_header_value('received')
  local names = {}
  for _, h in ipairs(msg:get_all_headers()) do names[#names + 1] = h[1] .. '=' .. h[2] end
  out[#out + 1] = table.concat(names, ';')
  out[#out + 1] = tostring(msg:get_first_named_header_value('missing'))
  out[#out + 1] = msg:get_meta('hostname')
  kumo.reject(550, table.concat(out, '\n'))
end)
"""
    )
    verdict = ev.evaluate(
        request(
            "smtp_server_data",
            message=pb.MessageArgs(
                message_id="m1", sender="a@b", recipients=["c@d", "e@f"], data=MESSAGE
            ),
        )
    )
    lines = verdict.text.split("\n")
    assert lines[2].startswith("table: ")  # several recipients: msg:recipient() is an array
    assert lines[:2] + lines[3:] == [
        "m1",
        "a@b",
        "2",
        "Hi",
        "Hi|second",
        "from a\tby b",
        "Received=from a\tby b;Subject=Hi;subject=second;X-Drop=1;x-drop=2 folded;To=r@example.com",
        "nil",
        "mx.test",
    ]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("msg:append_header('Bad Name', 'v')", "invalid header name"),
        ("msg:append_header('X', 'a\\r\\nInjected: 1')", "must not contain CR or LF"),
        ("msg:append_header('X', {})", "value must be a string"),
    ],
)
def test_bad_header_changes_are_errors(load, call, message) -> None:
    ev = load(f"kumo.on('smtp_server_data', function(msg) {call} end)")
    verdict = ev.evaluate(request("smtp_server_data", message=pb.MessageArgs(data=b"A: b\r\n\r\n")))
    assert verdict.action == pb.ACTION_ERROR and message in verdict.error


def test_require_loads_modules_from_the_policy_directory(tmp_path, write_policy) -> None:
    write_policy("return { code = 554 }", "lib/codes.lua")
    write_policy("local util = require 'util'\nreturn { code = util.code }", "helpers/init.lua")
    write_policy("return { code = require('lib.codes').code }", "util.lua")
    path = write_policy(
        "local helpers = require 'helpers'\n"
        "kumo.on('smtp_server_mail_from', function() kumo.reject(helpers.code, 'x') end)",
        "init.lua",
    )
    policy = LuaPolicy(PolicySource.at(path.parent))
    assert sorted(policy.files) == ["helpers/init.lua", "init.lua", "lib/codes.lua", "util.lua"]
    assert Engine(policy).evaluate(mail()).code == 554


@pytest.mark.parametrize("name", ["../outside", "..", "/etc/passwd", "a..b", "x/../../y"])
def test_require_cannot_leave_the_policy_directory(tmp_path, write_policy, name) -> None:
    (tmp_path.parent / "outside.lua").write_text("return 1")
    path = write_policy(f"require '{name}'")
    with pytest.raises(PolicyError) as err:
        LuaPolicy(PolicySource.at(path))
    assert "policy.lua:1:" in str(err.value)


@pytest.mark.parametrize(
    ("call", "outcome"),
    [
        ("kumo.reject(550, 'no')", (pb.ACTION_REJECT, 550, "no")),
        ("kumo.reject('451', 42)", (pb.ACTION_REJECT, 451, "42")),  # as mlua converts them
        ("kumo.reject(550.0, '')", (pb.ACTION_REJECT, 550, "")),
        ("kumo.disconnect(421, 'bye')", (pb.ACTION_DISCONNECT, 421, "bye")),
        ("kumo.reject(550)", "kumo.reject: message must be a string, got nil"),
        ("kumo.reject(550, {})", "kumo.reject: message must be a string, got table"),
        (
            "kumo.reject(550.5, 'x')",
            "kumo.reject: code must be an integer from 400 to 599, got 550.5",
        ),
        ("kumo.reject(250, 'x')", "kumo.reject: code must be an integer from 400 to 599, got 250"),
        ("kumo.disconnect(421)", "kumo.disconnect: message must be a string, got nil"),
        ("kumo.disconnect(421, 'x', 'Later')", "kumo.disconnect: mode must be 'ForceDisconnect'"),
    ],
)
def test_reject_and_disconnect_take_kumomta_s_arguments(load, call, outcome) -> None:
    verdict = load(f"kumo.on('smtp_server_mail_from', function() {call} end)").evaluate(mail())
    if isinstance(outcome, tuple):
        assert (verdict.action, verdict.code, verdict.text) == outcome
    else:
        assert verdict.action == pb.ACTION_ERROR and outcome in verdict.error, verdict.error
