"""The policy API as an SMTP client sees it, through the real daemon and edge."""

from __future__ import annotations

import smtplib
import subprocess
import sys

import pytest

from tests.procs import HOSTNAME, refused_start

TECHNICAL_DIFFICULTIES = b"421 4.3.0 mx.test technical difficulties\r\n"


def mail_from(stack, sender: bytes = b"s@example.com") -> bytes:
    """MAIL FROM on a greeted session; returns the reply and, if the server
    closed, everything up to the close."""
    client = stack.greeted()
    client.send(b"MAIL FROM:<" + sender + b">\r\nNOOP\r\n")
    reply = client.reply()
    if reply.startswith(b"421"):
        reply += client.rest_until_close()
    client.close()
    return reply


@pytest.mark.policy(
    r"""
kumo.on('smtp_server_mail_from', function(sender)
  if sender.user == 'multi' then kumo.reject(550, '5.7.1 first line\nsecond line\r\nlast line') end
  if sender.user == 'enhanced' then kumo.reject(452, '4.1.1 mailbox full') end
  if sender.user == 'empty' then kumo.reject(550, '') end
  if sender.user == 'utf8' then kumo.reject(550, 'nein danke, Grüße') end
end)
"""
)
@pytest.mark.parametrize(
    ("user", "want"),
    [
        (b"multi", b"550-5.7.1 first line\r\n550-second line\r\n550 last line\r\n"),
        (b"enhanced", b"452 4.1.1 mailbox full\r\n"),
        (b"empty", b"550 rejected by policy\r\n"),
        (b"utf8", "550 nein danke, Grüße\r\n".encode()),
        (b"other", b"250 OK\r\n"),
    ],
)
def test_reject_text_is_sent_as_written(stack, user: bytes, want: bytes) -> None:
    assert mail_from(stack, user + b"@example.com") == want


@pytest.mark.policy(
    r"""
kumo.on('smtp_server_connection_accepted', function(conn_meta)
  conn_meta:set_meta('x_first', {n = 1, tags = {'a', 'b'}, ok = true})
  conn_meta:set_meta('x_counter', 1)
end)
kumo.on('smtp_server_ehlo', function(domain, conn_meta, extensions)
  local v = conn_meta:get_meta('x_first')
  conn_meta:set_meta('x_counter', conn_meta:get_meta('x_counter') + 1)
  conn_meta:set_meta('x_ehlo_saw', table.concat({v.n, v.tags[2], tostring(v.ok),
    tostring(conn_meta:get_meta('ehlo_domain'))}, ','))
end)
kumo.on('smtp_server_mail_from', function(sender, conn_meta)
  local keys = {}
  for _, k in ipairs({'reception_protocol', 'received_from', 'received_via', 'hostname',
                      'ehlo_domain', 'x_ehlo_saw', 'x_counter', 'x_missing'}) do
    keys[#keys + 1] = k .. '=' .. tostring(conn_meta:get_meta(k))
  end
  kumo.reject(550, table.concat(keys, ' '))
end)
"""
)
def test_conn_meta_round_trips_and_predefined_keys(stack) -> None:
    client = stack.greeted()
    peer_ip, peer_port = client.sock.getsockname()
    reply = client.command(b"MAIL FROM:<s@example.com>")
    assert (
        reply
        == (
            f"550 reception_protocol=ESMTP received_from={peer_ip}:{peer_port} "
            f"received_via=127.0.0.1:{stack.port} hostname={HOSTNAME} ehlo_domain=client.test "
            "x_ehlo_saw=1,b,true,nil x_counter=2 x_missing=nil\r\n"
        ).encode()
    )


@pytest.mark.policy(
    r"""
kumo.on('smtp_server_data', function(msg)
  msg:append_header('X-Appended', 'at data')
  msg:remove_all_named_headers('x-secret')
  msg:set_meta('x_subject', msg:get_first_named_header_value('Subject'))
end)
kumo.on('smtp_server_message_received', function(msg)
  -- sees the data handler's changes and message meta
  msg:prepend_header('X-Seen', msg:get_meta('x_subject') .. ' / ' ..
    tostring(msg:get_first_named_header_value('x-appended')) .. ' / ' ..
    tostring(msg:get_first_named_header_value('X-Secret')))
  msg:prepend_header('X-Data-Length', tostring(#msg:get_data()))
end)
"""
)
def test_header_changes_are_in_the_stored_message(stack) -> None:
    client = stack.greeted()
    client.command(b"MAIL FROM:<s@example.com>")
    client.command(b"RCPT TO:<r@example.com>")
    client.command(b"DATA")
    body = (
        b"Subject: hello\r\n folded\r\nX-Secret: one\r\nX-Secret: two\r\n"
        b"To: r@example.com\r\n\r\nbody line\r\n"
    )
    client.send(body + b".\r\n")
    assert client.reply().startswith(b"250 OK ids=")
    (stored,) = stack.stored_entries()
    data_seen = (
        b"Subject: hello\r\n folded\r\nTo: r@example.com\r\nX-Appended: at data\r\n"
        b"\r\nbody line\r\n"
    )
    seen = b"X-Seen: hello folded / at data / nil\r\n"
    # smtp_server_message_received sees the Received header, and prepends above it
    assert b"for <r@example.com>" in stored.received
    assert stored.raw.endswith(
        b"X-Data-Length: %d\r\n" % (len(seen) + len(stored.received) + len(data_seen))
        + seen
        + stored.received
        + data_seen
    )


@pytest.mark.policy(
    r"""
kumo.on('smtp_server_mail_from', function(sender)
  if sender.user == 'runtime' then local t = nil; return t.field end
  if sender.user == 'mode' then kumo.disconnect(451, 'x', 'Bogus') end
  if sender.user == 'code' then kumo.reject(250, 'not an error code') end
  if sender.user == 'thrown' then error({}) end
end)
"""
)
@pytest.mark.parametrize("user", [b"runtime", b"mode", b"code", b"thrown"])
def test_policy_errors_give_technical_difficulties_and_close(stack, user: bytes) -> None:
    assert mail_from(stack, user + b"@example.com") == TECHNICAL_DIFFICULTIES
    errors = [e for e in stack.daemon.log_lines() if e.get("msg") == "policy error"]
    assert errors, "the daemon logs the policy error"
    assert "policy.lua:" in errors[-1]["error"]


@pytest.mark.policy(
    r"""
kumo.on('smtp_server_ehlo', function(domain, conn_meta, extensions)
  if domain == 'plain.test' then return {'8BITMIME'} end
  conn_meta:set_meta('x_extensions', extensions)
end)
kumo.on('smtp_server_mail_from', function(sender, conn_meta)
  kumo.reject(550, table.concat(conn_meta:get_meta('x_extensions'), ','))
end)
"""
)
def test_ehlo_extensions_reach_the_policy_and_can_be_replaced(stack) -> None:
    with stack.client() as client:
        client.reply()
        assert client.command(b"EHLO plain.test") == b"250-mx.test\r\n250 8BITMIME\r\n"
        assert client.command(b"EHLO other.test") == (
            b"250-mx.test\r\n250-SIZE 10485760\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
            b"250-PIPELINING\r\n250 HELP\r\n"
        )
        assert client.command(b"MAIL FROM:<a@b.c>") == (
            b"550 SIZE 10485760,8BITMIME,SMTPUTF8,PIPELINING,HELP\r\n"
        )


@pytest.mark.policy(
    r"""
local kumo = require 'kumo'
kumo.on('init', function() kumo.start_esmtp_listener { listen = '0:25' } end)
kumo.on('get_queue_config', function() end)
kumo.on('smtp_server_message_deferred_inject', function() end)
kumo.on('smtp_server_mail_from', function(sender)
  if sender.domain == 'blocked.example' then kumo.reject(550, '5.7.1 blocked') end
end)
"""
)
def test_a_kumomta_policy_loads_and_its_smtp_handlers_work(stack) -> None:
    warnings = [e["msg"] for e in stack.daemon.log_lines() if e.get("level") == "WARNING"]
    assert len(warnings) == 2
    assert "policy.lua:4: event 'get_queue_config' is not supported" in warnings[0]
    assert "smtp_server_message_deferred_inject" in warnings[1]
    assert mail_from(stack, b"a@blocked.example") == b"550 5.7.1 blocked\r\n"
    assert mail_from(stack, b"a@fine.example") == b"250 OK\r\n"


def test_two_handlers_for_one_event_are_refused_at_start(tmp_path, write_policy) -> None:
    path = write_policy(
        """
kumo.on('smtp_server_mail_from', function() end)

kumo.on('smtp_server_mail_from', function() end)
"""
    )
    result = refused_start("policyd", "--policy", str(path), "--listen", "127.0.0.1:0")
    assert result.returncode != 0
    assert (
        "policy.lua:4: kumo.on: 'smtp_server_mail_from' already has a handler, "
        "registered at policy.lua:2"
    ) in result.stderr


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("kumo.on('smtp_server_ehlo', function()\n  return 1 +\nend)\n", "policy.lua:3:"),
        ("local x = nil\nx.y = 1\n", "policy.lua:2:"),
        ("kumo.on('smtp_server_ehlo', 42)\n", "policy.lua:1:"),
    ],
    ids=["syntax", "runtime-at-load", "bad-argument"],
)
def test_broken_policies_are_refused_at_start_with_file_and_line(write_policy, text, where) -> None:
    path = write_policy(text)
    result = refused_start("policyd", "--policy", str(path), "--listen", "127.0.0.1:0")
    assert result.returncode == 2
    assert where in result.stderr


@pytest.mark.policy(
    r"""
kumo.on('smtp_server_rcpt_to', function(rcpt)
  if rcpt.domain == 'nowhere.example' then kumo.reject(550, '5.1.1 no such user') end
end)
kumo.on('smtp_server_data', function(msg)
  msg:prepend_header('X-Policy-Sender', tostring(msg:sender()))
end)
"""
)
def test_smtplib_delivers_a_message_end_to_end(stack) -> None:
    body = "From: a@example.com\r\nTo: b@example.com\r\nSubject: via smtplib\r\n\r\nHello.\r\n"
    with smtplib.SMTP("127.0.0.1", stack.port, timeout=10) as smtp:
        code, _ = smtp.ehlo("client.test")
        assert code == 250
        refused = smtp.sendmail(
            "a@example.com", ["b@example.com", "c@nowhere.example"], body.encode()
        )
        assert refused == {"c@nowhere.example": (550, b"5.1.1 no such user")}
    (stored,) = stack.stored()
    assert stored == b"X-Policy-Sender: a@example.com\r\n" + body.encode()
    accepted = [e for e in stack.edge.log_lines() if e.get("msg") == "accepted"]
    assert accepted[0]["recipients"] == 1


def test_the_daemon_answers_invalid_requests_with_invalid_argument(stack_factory) -> None:
    import grpc

    from policy.v1 import policy_pb2 as pb
    from policy.v1 import policy_pb2_grpc as pb_grpc

    stack = stack_factory(
        "kumo.on('smtp_server_mail_from', function() end)",
        daemon_args=("--max-message-size", "1000"),
    )
    big = pb.MessageArgs(sender="a@b", recipients=["c@d"], data=b"x" * 1001)
    with grpc.insecure_channel(stack.daemon_address) as channel:
        stub = pb_grpc.PolicyServiceStub(channel)
        for request, message in [
            (pb.EvaluateRequest(event="smtp_server_nope"), "unknown event 'smtp_server_nope'"),
            (pb.EvaluateRequest(event="smtp_server_mail_from"), "needs args.mail_from"),
            (
                pb.EvaluateRequest(event="smtp_server_data", mail_from=pb.MailFromArgs()),
                "event smtp_server_data needs args.message",
            ),
            (
                pb.EvaluateRequest(event="smtp_server_ehlo", ehlo=pb.EhloArgs()),
                "args.ehlo.domain is empty",
            ),
            (
                pb.EvaluateRequest(event="smtp_server_rcpt_to", rcpt_to=pb.RcptToArgs()),
                "args.rcpt_to.recipient is empty",
            ),
            (
                pb.EvaluateRequest(event="smtp_server_data", message=big),
                "args.message.data is 1001 bytes, more than this daemon's limit of 1000",
            ),
        ]:
            with pytest.raises(grpc.RpcError) as err:
                stub.Evaluate(request, timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert message in (err.value.details() or "")
        verdict = stub.Evaluate(
            pb.EvaluateRequest(
                request_id=7, event="smtp_server_mail_from", mail_from=pb.MailFromArgs(sender="")
            ),
            timeout=5,
        )
        assert verdict.request_id == 7
        assert verdict.action == pb.ACTION_CONTINUE
        assert len(verdict.revision) == 12 and verdict.decision_id


def test_help_and_module_entry_points() -> None:
    for module in ("policyd", "smtpedge"):
        result = subprocess.run(
            [sys.executable, "-m", module, "serve", "--help"], capture_output=True, text=True
        )
        assert result.returncode == 0
        assert "--listen" in result.stdout


def test_sigterm_tells_idle_sessions_and_both_processes_exit_cleanly(
    process_stack_factory,
) -> None:
    import signal

    stack = process_stack_factory("kumo.on('smtp_server_mail_from', function() end)")
    idle = stack.greeted()
    stack.edge.signal(signal.SIGTERM)
    assert idle.rest_until_close() == b"421 4.3.2 mx.test service shutting down\r\n"
    assert stack.edge.popen.wait(10) == 0
    assert stack.daemon.stop() == 0


def test_a_second_sigterm_stops_at_once(process_stack_factory) -> None:
    """The first signal waits for a busy session (here, one in the middle of DATA,
    with 30 s of grace); a second ends the process at once, exit status 1, with
    a log line saying so and no traceback."""
    import signal

    stack = process_stack_factory(
        "kumo.on('smtp_server_mail_from', function() end)", "--shutdown-grace", "30"
    )
    busy = stack.greeted()
    assert busy.command(b"MAIL FROM:<a@example.com>") == b"250 OK\r\n"
    assert busy.command(b"RCPT TO:<b@example.com>") == b"250 OK\r\n"
    assert busy.command(b"DATA").startswith(b"354 ")
    busy.send(b"Subject: half\r\n")  # the message is not over
    stack.edge.signal(signal.SIGTERM)
    stack.edge.wait_for_log(lambda e: e.get("msg") == "shutting down")
    assert stack.edge.popen.poll() is None  # still waiting for the busy session
    stack.edge.signal(signal.SIGTERM)
    assert stack.edge.popen.wait(5) == 1
    assert stack.edge.wait_for_log(lambda e: e.get("msg") == "second signal: stopping at once")
    assert "Traceback" not in stack.edge.log_path.read_text()
    assert stack.stored() == []  # nothing was acknowledged, nothing is stored
