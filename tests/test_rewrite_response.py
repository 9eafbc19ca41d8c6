"""smtp_server_rewrite_response: every reply the session sends passes through
the policy first (status, text without codes, the command it answers,
conn_meta), through the real daemon and edge over SMTP."""

from __future__ import annotations

import re

from tests.smtpclient import RawClient

DOCUMENTED = r"""
kumo.on('smtp_server_rewrite_response', function(status, response, command, conn_meta)
  if command == 'DATA' and status == 250 then
    return 250, 'super fantastic!\n' .. response
  end
  if command == nil and status == 220 then
    return nil, response .. '\nwelcome ' .. conn_meta:get_meta('received_from'):match('^(.*):')
  end
  if command == 'RCPT' and status == 550 then return 551, '5.1.6 moved away' end
  if command == 'MAIL' and response:find('closing') then return 421 end
  if command == 'NOOP' then return 250, 'first\r\nsecond' end
end)
kumo.on('smtp_server_rcpt_to', function(rcpt)
  if rcpt.user == 'gone' then kumo.reject(550, '5.1.1 no such user') end
end)
kumo.on('smtp_server_mail_from', function(sender)
  if sender.user == 'close' then kumo.reject(450, '4.7.1 closing soon') end
end)
"""


def test_replies_are_rewritten_as_kumomta_documents(stack_factory) -> None:
    stack = stack_factory(DOCUMENTED)
    with RawClient(stack.port) as client:
        assert client.reply() == b"220-mx.test ESMTP smtpedge\r\n220 welcome 127.0.0.1\r\n"
        assert client.command(b"EHLO client.test").startswith(b"250-mx.test\r\n")
        assert client.command(b"NOOP") == b"250-first\r\n250 second\r\n"
        assert client.command(b"MAIL FROM:<a@example.com>") == b"250 OK\r\n"
        assert client.command(b"RCPT TO:<gone@example.com>") == b"551 5.1.6 moved away\r\n"
        assert client.command(b"RCPT TO:<b@example.com>") == b"250 OK\r\n"
        assert client.command(b"DATA").startswith(b"354 ")
        client.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
        assert re.fullmatch(rb"250-super fantastic!\r\n250 OK ids=[0-9a-f]{32}\r\n", client.reply())
        assert client.command(b"MAIL FROM:<close@example.com>") == b"421 4.7.1 closing soon\r\n"
        assert client.rest_until_close() == b""
    assert len(stack.stored_entries()) == 1


def test_a_failing_handler_leaves_the_reply_as_it_was(stack_factory) -> None:
    stack = stack_factory(r"""
kumo.on('smtp_server_rewrite_response', function(status, response, command)
  if command == 'MAIL' then error('broken rewrite') end
  if command == 'RCPT' then kumo.reject(550, 'no') end
  if command == 'NOOP' then return 99 end
  if command == 'RSET' then return nil, 'bell\7' end
end)
""")
    with RawClient(stack.port) as client:
        assert client.reply() == b"220 mx.test ESMTP smtpedge\r\n"
        client.command(b"EHLO client.test")
        assert client.command(b"MAIL FROM:<a@example.com>") == b"250 OK\r\n"
        assert client.command(b"RCPT TO:<b@example.com>") == b"250 OK\r\n"
        assert client.command(b"NOOP") == b"250 OK\r\n"
        assert client.command(b"RSET") == b"250 OK\r\n"
    errors = [e["error"] for e in stack.daemon.log_lines() if e.get("msg") == "policy error"]
    assert len(errors) == 4
    assert "broken rewrite" in errors[0]
    assert "kumo.reject and kumo.disconnect do not apply here" in errors[1]
    assert "must return an SMTP status from 200 to 599" in errors[2]
    assert "returned a response with control characters" in errors[3]
