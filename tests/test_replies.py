"""Verdict → reply bytes: the pure function behind every refusal, against a literal table.

Every expected value below is written out by hand from SPEC.md section 3 (and
KumoMTA's documentation of kumo.disconnect), not computed: the table is what
a client sees.
"""

from __future__ import annotations

from typing import cast

import pytest

from policy.events import Stage
from policy.v1 import policy_pb2 as pb
from smtpedge.replies import Reply, ehlo_reply, policy_unavailable, render, reply_lines

H = "mx.test"
REJECT, DISCONNECT = pb.ACTION_REJECT, pb.ACTION_DISCONNECT
IF_421 = pb.DISCONNECT_MODE_IF_421
FOLLOW = pb.DISCONNECT_MODE_FOLLOW_WITH_421
FORCE = pb.DISCONNECT_MODE_FORCE_DISCONNECT
UNSPECIFIED = pb.DISCONNECT_MODE_UNSPECIFIED
COMMAND_STAGES = [Stage.EHLO, Stage.AUTH, Stage.MAIL, Stage.RCPT, Stage.DATA]

# (action, mode, code, at the connection stage?) -> (bytes sent, connection closed after)
TABLE = [
    # If421: only a 421 closes, except before the banner, where every refusal does.
    (REJECT, IF_421, 421, False, b"421 text\r\n", True),
    (REJECT, IF_421, 451, False, b"451 text\r\n", False),
    (REJECT, IF_421, 550, False, b"550 text\r\n", False),
    (REJECT, IF_421, 421, True, b"421 text\r\n", True),
    (REJECT, IF_421, 451, True, b"451 text\r\n", True),
    (REJECT, IF_421, 550, True, b"550 text\r\n", True),
    (DISCONNECT, IF_421, 421, False, b"421 text\r\n", True),
    (DISCONNECT, IF_421, 451, False, b"451 text\r\n", False),
    (DISCONNECT, IF_421, 550, False, b"550 text\r\n", False),
    (DISCONNECT, IF_421, 421, True, b"421 text\r\n", True),
    (DISCONNECT, IF_421, 451, True, b"451 text\r\n", True),
    (DISCONNECT, IF_421, 550, True, b"550 text\r\n", True),
    # FollowWith421: a non-421 reply is followed by the edge's own 421, then close.
    (REJECT, FOLLOW, 421, False, b"421 text\r\n", True),
    (REJECT, FOLLOW, 451, False,
     b"451 text\r\n421 mx.test disconnecting due to previous error\r\n", True),
    (REJECT, FOLLOW, 550, False,
     b"550 text\r\n421 mx.test disconnecting due to previous error\r\n", True),
    (REJECT, FOLLOW, 421, True, b"421 text\r\n", True),
    (REJECT, FOLLOW, 451, True,
     b"451 text\r\n421 mx.test disconnecting due to previous error\r\n", True),
    (DISCONNECT, FOLLOW, 421, False, b"421 text\r\n", True),
    (DISCONNECT, FOLLOW, 451, False,
     b"451 text\r\n421 mx.test disconnecting due to previous error\r\n", True),
    (DISCONNECT, FOLLOW, 550, False,
     b"550 text\r\n421 mx.test disconnecting due to previous error\r\n", True),
    (DISCONNECT, FOLLOW, 421, True, b"421 text\r\n", True),
    (DISCONNECT, FOLLOW, 550, True,
     b"550 text\r\n421 mx.test disconnecting due to previous error\r\n", True),
    # ForceDisconnect: the reply, then close, whatever the code.
    (REJECT, FORCE, 421, False, b"421 text\r\n", True),
    (REJECT, FORCE, 451, False, b"451 text\r\n", True),
    (REJECT, FORCE, 550, False, b"550 text\r\n", True),
    (REJECT, FORCE, 421, True, b"421 text\r\n", True),
    (REJECT, FORCE, 550, True, b"550 text\r\n", True),
    (DISCONNECT, FORCE, 421, False, b"421 text\r\n", True),
    (DISCONNECT, FORCE, 451, False, b"451 text\r\n", True),
    (DISCONNECT, FORCE, 550, False, b"550 text\r\n", True),
    (DISCONNECT, FORCE, 421, True, b"421 text\r\n", True),
    (DISCONNECT, FORCE, 550, True, b"550 text\r\n", True),
    # No mode given reads as If421 (the contract's default).
    (REJECT, UNSPECIFIED, 550, False, b"550 text\r\n", False),
    (REJECT, UNSPECIFIED, 421, False, b"421 text\r\n", True),
    (REJECT, UNSPECIFIED, 550, True, b"550 text\r\n", True),
]  # fmt: skip
NAMES = {REJECT: "reject", DISCONNECT: "disconnect", IF_421: "If421", FOLLOW: "FollowWith421",
         FORCE: "ForceDisconnect", UNSPECIFIED: "unspecified"}  # fmt: skip


def _id(row: tuple) -> str:
    action, mode, code, connect, _, _ = row
    return f"{NAMES[action]}-{NAMES[mode]}-{code}-{'connect' if connect else 'command'}"


@pytest.mark.parametrize(
    ("action", "mode", "code", "connect", "sent", "closes"), TABLE, ids=map(_id, TABLE)
)
def test_mode_table(action, mode, code, connect, sent, closes) -> None:
    verdict = pb.Verdict(action=action, code=code, text="text", mode=mode)
    for stage in [Stage.CONNECT] if connect else COMMAND_STAGES:
        reply = render(verdict, H, stage)
        assert reply is not None
        assert (reply.encode(), reply.close) == (sent, closes), stage


def test_the_table_covers_every_mode_code_kind_and_stage_kind() -> None:
    covered = {(a, m, code == 421, connect) for a, m, code, connect, _, _ in TABLE}
    for action in (REJECT, DISCONNECT):
        for mode in (IF_421, FOLLOW, FORCE):
            for is_421 in (True, False):
                for connect in (True, False):
                    assert (action, mode, is_421, connect) in covered


def test_continue_is_no_reply() -> None:
    for stage in Stage:
        assert render(pb.Verdict(action=pb.ACTION_CONTINUE), H, stage) is None


def test_error_is_technical_difficulties_and_closes() -> None:
    for stage in Stage:
        reply = render(pb.Verdict(action=pb.ACTION_ERROR, error="x"), H, stage)
        assert reply == Reply(("421 4.3.0 mx.test technical difficulties",), close=True)


@pytest.mark.parametrize(
    "bad",
    [
        None,
        pb.Verdict(),  # ACTION_UNSPECIFIED
        pb.Verdict(action=cast(pb.Action, 99)),
        pb.Verdict(action=REJECT, code=250, text="x"),
        pb.Verdict(action=REJECT, code=399, text="x"),
        pb.Verdict(action=REJECT, code=600, text="x"),
        pb.Verdict(action=DISCONNECT, code=0, text="x"),
    ],
    ids=["none", "unspecified", "unknown-action", "code-250", "code-399", "code-600", "code-0"],
)
def test_no_usable_verdict_is_never_continue(bad) -> None:
    for stage in COMMAND_STAGES:
        reply = render(bad, H, stage)
        assert reply is not None
        assert (reply.encode(), reply.close) == (
            b"451 4.3.0 mx.test policy service unavailable, try again later\r\n",
            False,
        )
    reply = render(bad, H, Stage.CONNECT)
    assert reply is not None
    assert (reply.encode(), reply.close) == (
        b"421 4.3.0 mx.test policy service unavailable, try again later\r\n",
        True,
    )


def test_policy_unavailable() -> None:
    assert policy_unavailable(H, Stage.RCPT) == Reply(
        ("451 4.3.0 mx.test policy service unavailable, try again later",)
    )
    assert policy_unavailable(H, Stage.CONNECT) == Reply(
        ("421 4.3.0 mx.test policy service unavailable, try again later",), close=True
    )


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ("one", ("550 one",)),
        ("", ("550 rejected by policy",)),
        ("a\nb", ("550-a", "550 b")),
        ("a\r\nb\r\nc", ("550-a", "550-b", "550 c")),
        ("trailing\n", ("550-trailing", "550 ")),
        ("cr\rinside", ("550 cr\rinside",)),
    ],
)
def test_reply_lines(text, lines) -> None:
    assert reply_lines(550, text) == lines


def test_a_multi_line_text_in_a_verdict() -> None:
    verdict = pb.Verdict(action=REJECT, code=550, text="5.7.1 one\ntwo", mode=FOLLOW)
    reply = render(verdict, H, Stage.MAIL)
    assert reply is not None
    assert reply.encode() == (
        b"550-5.7.1 one\r\n550 two\r\n421 mx.test disconnecting due to previous error\r\n"
    )


def test_encode_is_crlf_terminated_utf8() -> None:
    assert Reply(("550-a", "550 ü")).encode() == "550-a\r\n550 ü\r\n".encode()


@pytest.mark.parametrize(
    ("extensions", "sent"),
    [
        ([], b"250 mx.test\r\n"),
        (["8BITMIME"], b"250-mx.test\r\n250 8BITMIME\r\n"),
        (
            ["SIZE 1000", "8BITMIME", "SMTPUTF8", "PIPELINING", "HELP"],
            b"250-mx.test\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
            b"250-PIPELINING\r\n250 HELP\r\n",
        ),
    ],
)
def test_ehlo_reply(extensions, sent) -> None:
    assert ehlo_reply(H, extensions) == sent
