"""The shared kernel (policy/): addresses, the event table, options from the environment."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from lupa import lua54

from policy import addresses, checks, events, logs
from policy.addresses import Address
from policy.options import ADDRESS_OR_UNIX, AddressType, Options
from policy.v1 import policy_pb2 as pb
from policyd import runtime
from policyd.bridge import Bridge
from policyd.evaluate import Evaluator
from policyd.runtime import LuaPolicy
from policyd.source import PolicySource

PARSED = [
    # text, unix allowed, default port, expected
    ("127.0.0.1:25", False, None, Address("127.0.0.1", 25)),
    ("[::1]:2525", False, None, Address("::1", 2525)),
    ("mx.example:0", False, None, Address("mx.example", 0)),
    ("localhost:65535", False, None, Address("localhost", 65535)),
    ("unix:/run/policyd.sock", True, None, Address(path="/run/policyd.sock")),
    ("192.0.2.1", False, 53, Address("192.0.2.1", 53)),
    ("2001:db8::1", False, 53, Address("2001:db8::1", 53)),
    ("[2001:db8::1]", False, 53, Address("2001:db8::1", 53)),
    ("[2001:db8::1]:5353", False, 53, Address("2001:db8::1", 5353)),
]

REFUSED = [
    ("127.0.0.1", False, None, "expected HOST:PORT, [IPV6]:PORT, got '127.0.0.1'"),
    ("::1:25", False, None, "IPv6 addresses need brackets before a port: [::1]:25"),
    ("[::1]", False, None, "expected HOST:PORT, [IPV6]:PORT, got '[::1]'"),
    ("[mx.example]:25", False, None, "expected an IPv6 address in brackets"),
    (":25", False, None, "(no host)"),
    ("mx.example:", False, None, "expected a port from 0 to 65535 in 'mx.example:'"),
    ("mx.example:65536", False, None, "expected a port from 0 to 65535"),
    ("mx.example:2x", False, None, "expected a port from 0 to 65535"),
    ("unix:/run/policyd.sock", False, None, "expected HOST:PORT, [IPV6]:PORT, got 'unix:"),
    ("unix:", True, None, "expected HOST:PORT, [IPV6]:PORT or unix:PATH, got 'unix:'"),
]


@pytest.mark.parametrize(("text", "unix", "port", "expected"), PARSED)
def test_addresses_parse(text: str, unix: bool, port: int | None, expected: Address) -> None:
    assert addresses.parse(text, unix=unix, default_port=port) == expected


@pytest.mark.parametrize(("text", "unix", "port", "message"), REFUSED)
def test_addresses_refused_with_the_reason(
    text: str, unix: bool, port: int | None, message: str
) -> None:
    with pytest.raises(ValueError) as error:
        addresses.parse(text, unix=unix, default_port=port)
    assert message in str(error.value)


def test_addresses_print_as_they_parse_and_know_what_is_local() -> None:
    rows = [
        # text, is_local, is_name
        ("127.0.0.1:25", True, False),
        ("[::1]:25", True, False),
        ("localhost:25", True, True),
        ("unix:/tmp/p.sock", True, False),
        ("192.0.2.1:25", False, False),
        ("[2001:db8::1]:25", False, False),
        ("policyd.internal:50051", False, True),
    ]
    for text, local, name in rows:
        address = addresses.parse(text, unix=True)
        assert (str(address), address.is_local, address.is_name) == (text, local, name)


def test_parse_ip_takes_conn_meta_forms_and_unmaps_ipv4() -> None:
    assert addresses.parse_ip("192.0.2.1") == ipaddress.ip_address("192.0.2.1")
    assert addresses.parse_ip("192.0.2.1:40000") == ipaddress.ip_address("192.0.2.1")
    assert addresses.parse_ip("[2001:db8::1]:25") == ipaddress.ip_address("2001:db8::1")
    assert addresses.parse_ip("::ffff:192.0.2.1") == ipaddress.ip_address("192.0.2.1")
    with pytest.raises(ValueError, match=r"not an IP address: 'mx\.example:25'"):
        addresses.parse_ip("mx.example:25")


def test_grpc_peers() -> None:
    assert addresses.grpc_peer("ipv4:127.0.0.1:5000") == Address("127.0.0.1", 5000)
    assert addresses.grpc_peer("ipv6:[::1]:5000") == Address("::1", 5000)
    assert addresses.grpc_peer("unix:/run/p.sock") == Address(path="/run/p.sock")
    assert addresses.grpc_peer("unix-abstract:x") is None


def test_every_event_row_names_a_real_argument_field_and_a_stage() -> None:
    oneof = {f.name for f in pb.EvaluateRequest.DESCRIPTOR.oneofs_by_name["args"].fields}
    assert {event.field for event in events.EVENTS} == oneof
    for event in events.EVENTS:
        fields = events.ARGUMENT_TYPES[event.field].DESCRIPTOR.fields_by_name
        assert all(field in fields for _, field in event.logged), event.name
        assert all(field in fields for field in event.required), event.name
        assert "password" not in {field for _, field in event.logged}
        assert events.BY_NAME[event.name] is event and events.BY_SHORT[event.short] is event
    assert [e.name for e in events.of_stage(events.Stage.DATA)] == [
        "smtp_server_data",
        "smtp_server_split_transaction",
        "smtp_server_message_received",
    ]


def test_requests_built_from_a_row_carry_its_arguments() -> None:
    request = events.RCPT_TO.request(events.RCPT_TO.arguments(recipient="b@example.com"))
    assert request.event == "smtp_server_rcpt_to"
    assert request.WhichOneof("args") == "rcpt_to" and request.rcpt_to.recipient == "b@example.com"


ECHO_ARGUMENTS = r"""
local function describe(v)
  if type(v) ~= 'table' then return tostring(v) end
  if v.email ~= nil then return 'address ' .. v.email end
  if v.id ~= nil and v.recipient_list ~= nil then
    return 'message ' .. v:id() .. ' from ' .. v:sender().email .. ' to ' .. #v:recipient_list()
  end
  if v.get_meta ~= nil then return 'conn_meta ' .. v:get_meta('edge_id') end
  return 'list ' .. table.concat(v, ',')
end
local function echo(...)
  local out = {}
  for i = 1, select('#', ...) do out[i] = describe((select(i, ...))) end
  -- smtp_server_rewrite_response (the one event whose first argument is a
  -- number) answers with a new text rather than a refusal.
  if type((...)) == 'number' then return nil, table.concat(out, ' | ') end
  kumo.reject(550, table.concat(out, ' | '))
end
"""

# What each event's handler is given, in order: the Lua side of every row.
HANDLER_ARGUMENTS: list[tuple[events.Event, dict[str, Any], str]] = [
    (events.CONNECT, {}, "conn_meta edge-1"),
    (
        events.EHLO,
        {"domain": "client.example", "extensions": ["8BITMIME", "SIZE 10"]},
        "client.example | conn_meta edge-1 | list 8BITMIME,SIZE 10",
    ),
    (events.EHLO, {"domain": "client.example", "helo": True}, "client.example | conn_meta edge-1"),
    (
        events.AUTH_PLAIN,
        {"authz": "z", "authc": "alice", "password": "pw"},
        "z | alice | pw | conn_meta edge-1",
    ),
    (events.MAIL_FROM, {"sender": "a@example.com"}, "address a@example.com | conn_meta edge-1"),
    (events.RCPT_TO, {"recipient": "b@example.net"}, "address b@example.net | conn_meta edge-1"),
    *(
        (
            event,
            {"message_id": "m1", "sender": "a@example.com", "recipients": ["b@x", "c@y"],
             "data": b"Subject: s\r\n\r\n"},
            "message m1 from a@example.com to 2 | conn_meta edge-1",
        )
        for event in (events.DATA, events.SPLIT_TRANSACTION, events.MESSAGE_RECEIVED)
    ),
    (
        events.REWRITE_RESPONSE,
        {"status": 250, "response": "OK", "command": "DATA"},
        "250 | OK | DATA | conn_meta edge-1",
    ),
    (events.DYNAMIC_PARAMETERS, {"listener": "0.0.0.0:25"}, "0.0.0.0:25 | conn_meta edge-1"),
    (
        events.REWRITE_RESPONSE,
        {"status": 220, "response": "hi"},
        "220 | hi | nil | conn_meta edge-1",
    ),
]  # fmt: skip


def test_every_event_in_the_table_has_its_lua_side(tmp_path: Path) -> None:
    """kumo.lua gives each event of the table its handler's arguments, in
    KumoMTA's order: a handler that echoes them shows what it got."""
    assert {event for event, _, _ in HANDLER_ARGUMENTS} == set(events.EVENTS)
    policy = tmp_path / "policy.lua"
    policy.write_text(
        ECHO_ARGUMENTS + "".join(f"kumo.on('{e.name}', echo)\n" for e in events.EVENTS)
    )
    evaluator = Evaluator(LuaPolicy(PolicySource.at(policy)), Bridge())
    for event, fields, expected in HANDLER_ARGUMENTS:
        request = event.request(
            event.arguments(**fields),
            client=pb.Client(edge_id="edge-1", hostname="mx.test"),
            session=pb.Session(id="s", peer_ip="192.0.2.1", peer_port=1),
        )
        verdict = asyncio.run(evaluator.evaluate(request))
        if event is events.REWRITE_RESPONSE:
            assert verdict.response.text == expected
        else:
            assert (verdict.action, verdict.text) == (pb.ACTION_REJECT, expected), event.name


def test_an_event_without_a_lua_side_stops_the_runtime(tmp_path: Path, monkeypatch) -> None:
    new = events.Event("smtp_server_new", "connect", events.Stage.CONNECT, "new")
    monkeypatch.setattr(runtime, "EVENTS", (*events.EVENTS, new))
    policy = tmp_path / "policy.lua"
    policy.write_text("")
    # A fault of this service, not of the policy: no PolicyError that names a policy line.
    with pytest.raises(lua54.LuaError, match="no Lua side for the event smtp_server_new"):
        LuaPolicy(PolicySource.at(policy))


def test_options_take_their_environment_variable_from_the_flag() -> None:
    options = Options("EDGE")

    @click.command()
    @options.option("--policy-server", "servers", multiple=True, type=ADDRESS_OR_UNIX)
    @options.option("--dry-run/--no-dry-run", default=False)
    @options.option("--dns-server", type=AddressType(default_port=53))
    def command(servers: tuple[Address, ...], dry_run: bool, dns_server: Address) -> None:
        click.echo(f"{[str(s) for s in servers]} {dry_run} {dns_server}")

    env = {
        "EDGE_POLICY_SERVER": "unix:/p.sock 127.0.0.1:1",
        "EDGE_DRY_RUN": "1",
        "EDGE_DNS_SERVER": "192.0.2.53",
    }
    result = CliRunner().invoke(command, [], env=env)
    assert result.output == "['unix:/p.sock', '127.0.0.1:1'] True 192.0.2.53:53\n"
    help_text = CliRunner().invoke(command, ["--help"]).output
    assert "env var: EDGE_POLICY_SERVER" in help_text and "env var: EDGE_DRY_RUN" in help_text
    bad = CliRunner().invoke(command, ["--policy-server", "::1:5"])
    assert bad.exit_code == 2
    assert "IPv6 addresses need brackets before a port: [::1]:5" in bad.output


def test_number_checks_name_the_flag() -> None:
    checks.at_least({"--workers": (1, 1), "--grace": (0, 0)})
    checks.more_than_zero({"--timeout": 0.1})
    with pytest.raises(ValueError, match=r"^--grace must be at least 0, got -1$"):
        checks.at_least({"--workers": (1, 1), "--grace": (-1, 0)})
    with pytest.raises(ValueError, match=r"^--timeout must be more than 0, got 0$"):
        checks.more_than_zero({"--timeout": 0})


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("policyd", ["--policy", "p.lua", "--eval-timeout", "0"], "--eval-timeout must be more"),
        ("policyd", ["--policy", "p.lua", "--shutdown-grace", "-1"], "--shutdown-grace must be"),
        ("smtpedge", ["--idle-timeout", "0"], "--idle-timeout must be more than 0, got 0.0"),
        ("smtpedge", ["--stage-timeout", "mail=0"], "--stage-timeout mail must be more than 0"),
    ],
)
def test_both_programs_refuse_numbers_that_cannot_work(
    command: str, args: list[str], message: str
) -> None:
    from policyd.cli import main as policyd_main
    from smtpedge.cli import main as smtpedge_main

    main = policyd_main if command == "policyd" else smtpedge_main
    result = CliRunner().invoke(main, ["serve", *args])
    assert result.exit_code == 2  # a usage error: nothing was started
    assert message in result.output


def test_log_lines_are_json_with_the_fixed_fields_then_the_extras() -> None:
    import json
    import logging
    import sys

    formatter = logs.formatter()
    record = logging.makeLogRecord(
        {"name": "smtpedge.x", "levelno": 20, "levelname": "INFO", "msg": "accepted %s",
         "args": ("now",), "created": 1_700_000_000.25, "session_id": "s1", "path": Path("/m")}
    )  # fmt: skip
    line = json.loads(formatter.format(record))
    assert line == {
        "ts": "2023-11-14T22:13:20.250000+00:00",
        "level": "INFO",
        "logger": "smtpedge.x",
        "msg": "accepted now",
        "process": record.process,
        "session_id": "s1",
        "path": "/m",  # not JSON: as its str()
    }
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.makeLogRecord({"msg": "failed", "exc_info": sys.exc_info()})
    line = json.loads(formatter.format(record))
    assert line["msg"] == "failed" and "ValueError: boom" in line["exc_info"]
