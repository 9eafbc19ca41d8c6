"""The three examples of kumo.disconnect's documentation, byte for byte.

Each client pipelines more commands (and a whole transaction) after the MAIL
FROM that is refused: none of it may be answered or stored.
"""

from __future__ import annotations

import pytest

PIPELINED_AFTER = (
    b"NOOP\r\nMAIL FROM:<late@example.com>\r\nRCPT TO:<rcpt@example.com>\r\n"
    b"DATA\r\nSubject: must not be stored\r\n\r\nbody\r\n.\r\n"
)

SEEDS = {
    "disconnect with a 421": (
        "kumo.disconnect(421, 'mta.example.com go away!')",
        b"421 mta.example.com go away!\r\n",
    ),
    "non-standard code, non-conformant": (
        "kumo.disconnect(451, 'no thank you')",
        b"451 no thank you\r\n",
    ),
    "non-standard code, conformant": (
        "kumo.disconnect(451, 'no thank you', 'FollowWith421')",
        b"451 no thank you\r\n421 mx.test disconnecting due to previous error\r\n",
    ),
}


@pytest.mark.parametrize("name", SEEDS)
def test_seed_example(stack_factory, name: str) -> None:
    call, expected = SEEDS[name]
    stack = stack_factory(
        f"""
kumo.on('smtp_server_mail_from', function(sender)
  {call}
  -- this line is not reached
  kumo.reject(550, 'reached the line after kumo.disconnect')
end)
"""
    )
    with stack.greeted() as client:
        client.send(b"MAIL FROM:<sender@example.com>\r\n" + PIPELINED_AFTER)
        assert client.rest_until_close() == expected
    assert stack.stored() == []
