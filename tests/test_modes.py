"""Every disconnect mode x (421, non-421) x every stage, as the client sees it.

One policy serves the command stages: the instruction comes from the client's
own input (EHLO domain, sender or recipient local part, a header), e.g.
"disconnect-451-FollowWith421". The connection stage has no input, so each
case there runs its own policy.
"""

from __future__ import annotations

import pytest

from tests.mailstore import read_maildir
from tests.smtpclient import RawClient

H = b"mx.test"
FOLLOW = b"421 " + H + b" disconnecting due to previous error\r\n"

MATRIX_POLICY = r"""
local function apply(instr)
  local action, code, mode = (instr or ''):match('^(%a+)%-(%d+)%-(%w+)$')
  if not action then return end
  local text = '5.7.1 ' .. instr
  if action == 'reject' then kumo.reject(tonumber(code), text) end
  if mode == 'default' then kumo.disconnect(tonumber(code), text) end
  kumo.disconnect(tonumber(code), text, mode)
end

kumo.on('smtp_server_ehlo', function(domain) apply(domain) end)
kumo.on('smtp_server_mail_from', function(sender) apply(sender.user) end)
kumo.on('smtp_server_rcpt_to', function(rcpt) apply(rcpt.user) end)
kumo.on('smtp_server_data', function(msg) apply(msg:get_first_named_header_value('X-Data')) end)
kumo.on('smtp_server_message_received', function(msg)
  apply(msg:get_first_named_header_value('X-Received'))
  local rcpts = {}
  for i, r in ipairs(msg:recipient_list()) do rcpts[i] = tostring(r) end
  msg:prepend_header('X-Recipients', table.concat(rcpts, ','))
end)
"""

# (instruction, code, closes, extra 421 line)
CASES = [
    ("reject-550-If421", 550, False, False),
    ("reject-421-If421", 421, True, False),
    ("disconnect-550-If421", 550, False, False),
    ("disconnect-421-If421", 421, True, False),
    ("disconnect-451-FollowWith421", 451, True, True),
    ("disconnect-421-FollowWith421", 421, True, False),
    ("disconnect-550-ForceDisconnect", 550, True, False),
    ("disconnect-421-ForceDisconnect", 421, True, False),
    ("disconnect-451-default", 451, True, False),
    ("disconnect-421-default", 421, True, False),
]
IDS = [c[0] for c in CASES]


def expected(instr: str, code: int, follow: bool) -> bytes:
    return b"%d 5.7.1 %s\r\n" % (code, instr.encode()) + (FOLLOW if follow else b"")


def finish(client: RawClient, reply: bytes, want: bytes, closes: bool) -> None:
    """Checks the reply; a closing one must be the last thing the client ever gets,
    whatever it pipelined after it."""
    if closes:
        assert reply + client.rest_until_close() == want
    else:
        assert reply == want
        assert client.command(b"NOOP") == b"250 OK\r\n"


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    from tests.procs import start_daemon, start_edge

    workdir = tmp_path_factory.mktemp("matrix")
    policy = workdir / "policy.lua"
    policy.write_text(MATRIX_POLICY)
    daemon, address = start_daemon(policy, workdir)
    edge, port = start_edge(address, workdir)
    yield workdir, port
    edge.stop()
    daemon.stop()


def stored_with(workdir, marker: bytes) -> list[bytes]:
    return [e.message for e in read_maildir(workdir / "mail") if marker in e.message]


@pytest.mark.parametrize(("instr", "code", "closes", "follow"), CASES, ids=IDS)
def test_ehlo(matrix, instr, code, closes, follow) -> None:
    _, port = matrix
    with RawClient(port) as client:
        client.reply()
        client.send(b"EHLO " + instr.encode() + b"\r\nMAIL FROM:<a@example.com>\r\n")
        reply = client.reply()
        finish_ehlo = expected(instr, code, follow)
        if closes:
            assert reply + client.rest_until_close() == finish_ehlo
        else:
            assert reply == finish_ehlo
            # Not greeted: MAIL gets the usual 503 until a greeting succeeds.
            assert client.reply() == b"503 Error: send HELO first\r\n"
            assert client.command(b"EHLO ok.example").startswith(b"250-mx.test\r\n")
            assert client.command(b"MAIL FROM:<a@example.com>") == b"250 OK\r\n"


@pytest.mark.parametrize(("instr", "code", "closes", "follow"), CASES, ids=IDS)
def test_helo(matrix, instr, code, closes, follow) -> None:
    _, port = matrix
    with RawClient(port) as client:
        client.reply()
        reply = client.command(b"HELO " + instr.encode())
        finish(client, reply, expected(instr, code, follow), closes)


@pytest.mark.parametrize(("instr", "code", "closes", "follow"), CASES, ids=IDS)
def test_mail_from(matrix, instr, code, closes, follow) -> None:
    _, port = matrix
    with RawClient(port) as client:
        client.reply()
        client.command(b"EHLO client.test")
        client.send(
            b"MAIL FROM:<" + instr.encode() + b"@example.com>\r\n"
            b"RCPT TO:<after-mail@example.com>\r\n"
        )
        reply = client.reply()
        want = expected(instr, code, follow)
        if closes:
            assert reply + client.rest_until_close() == want
        else:
            assert reply == want
            # No transaction was opened.
            assert client.reply() == b"503 Error: need MAIL command\r\n"


@pytest.mark.parametrize(("instr", "code", "closes", "follow"), CASES, ids=IDS)
def test_rcpt_to(matrix, instr, code, closes, follow) -> None:
    workdir, port = matrix
    marker = f"rcpt-{instr}".encode()
    with RawClient(port) as client:
        client.reply()
        client.command(b"EHLO client.test")
        assert client.command(b"MAIL FROM:<s@example.com>") == b"250 OK\r\n"
        assert client.command(b"RCPT TO:<first@example.com>") == b"250 OK\r\n"
        client.send(
            b"RCPT TO:<" + instr.encode() + b"@example.com>\r\nRCPT TO:<second@example.com>\r\n"
        )
        reply = client.reply()
        want = expected(instr, code, follow)
        if closes:
            assert reply + client.rest_until_close() == want
            return
        assert reply == want
        assert client.reply() == b"250 OK\r\n"
        assert client.command(b"DATA").startswith(b"354")
        client.send(b"Subject: " + marker + b"\r\n\r\nbody\r\n.\r\n")
        assert client.reply().startswith(b"250 OK ids=")
    # The refused recipient was not added; the ones before and after it were,
    # each given its own message.
    got = sorted(m.split(b"\r\n", 1)[0] for m in stored_with(workdir, marker))
    assert got == [b"X-Recipients: first@example.com", b"X-Recipients: second@example.com"]


@pytest.mark.parametrize("header", ["X-Data", "X-Received"])
@pytest.mark.parametrize(("instr", "code", "closes", "follow"), CASES, ids=IDS)
def test_data_phase(matrix, header, instr, code, closes, follow) -> None:
    workdir, port = matrix
    marker = f"data-{header}-{instr}".encode()
    with RawClient(port) as client:
        client.reply()
        client.command(b"EHLO client.test")
        client.command(b"MAIL FROM:<s@example.com>")
        client.command(b"RCPT TO:<r@example.com>")
        assert client.command(b"DATA").startswith(b"354")
        client.send(
            header.encode()
            + b": "
            + instr.encode()
            + b"\r\nSubject: "
            + marker
            + b"\r\n\r\nbody\r\n.\r\nNOOP\r\n"
        )
        reply = client.reply()
        want = expected(instr, code, follow)
        if closes:
            assert reply + client.rest_until_close() == want
        else:
            assert reply == want
            assert client.reply() == b"250 OK\r\n"  # the pipelined NOOP
    # The whole transaction was refused: nothing stored.
    assert stored_with(workdir, marker) == []


@pytest.mark.parametrize(("instr", "code", "closes", "follow"), CASES, ids=IDS)
def test_connection_accepted(stack_factory, instr, code, closes, follow) -> None:
    action, _, mode = instr.split("-")
    if action == "reject":
        call = f"kumo.reject({code}, '5.7.1 {instr}')"
    elif mode == "default":
        call = f"kumo.disconnect({code}, '5.7.1 {instr}')"
    else:
        call = f"kumo.disconnect({code}, '5.7.1 {instr}', '{mode}')"
    stack = stack_factory(f"kumo.on('smtp_server_connection_accepted', function() {call} end)")
    with stack.client() as client:
        client.send(b"EHLO client.test\r\nNOOP\r\n")
        # Sent instead of the banner, and the session ends whatever the code.
        assert client.rest_until_close() == expected(instr, code, follow)
