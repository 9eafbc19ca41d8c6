"""Verdict → reply bytes: the pure function behind every refusal, exhaustively."""

from __future__ import annotations

import itertools

import pytest

from policy.v1 import policy_pb2 as pb
from smtpedge.replies import Reply, policy_unavailable, render, reply_lines
from smtpedge.stages import Stage

H = "mx.test"
MODES = [
    pb.DISCONNECT_MODE_IF_421,
    pb.DISCONNECT_MODE_FOLLOW_WITH_421,
    pb.DISCONNECT_MODE_FORCE_DISCONNECT,
]


def verdict(action=pb.ACTION_REJECT, code=550, text="5.7.1 no", mode=pb.DISCONNECT_MODE_IF_421):
    return pb.Verdict(action=action, code=code, text=text, mode=mode)


@pytest.mark.parametrize(
    ("action", "mode", "code", "stage"),
    list(
        itertools.product(
            [pb.ACTION_REJECT, pb.ACTION_DISCONNECT], MODES, [421, 451, 550], list(Stage)
        )
    ),
)
def test_mode_table(action, mode, code, stage) -> None:
    reply = render(verdict(action, code, "text", mode), H, stage)
    assert reply is not None
    first = f"{code} text"
    if code == 421 or mode == pb.DISCONNECT_MODE_FORCE_DISCONNECT:
        assert reply == Reply((first,), close=True)
    elif mode == pb.DISCONNECT_MODE_FOLLOW_WITH_421:
        assert reply == Reply((first, f"421 {H} disconnecting due to previous error"), close=True)
    else:  # If421 with another code: stays open, except at the connection stage
        assert reply == Reply((first,), close=stage is Stage.CONNECT)


def test_continue_is_no_reply() -> None:
    assert render(pb.Verdict(action=pb.ACTION_CONTINUE), H, Stage.MAIL) is None


def test_error_is_technical_difficulties() -> None:
    for stage in Stage:
        reply = render(pb.Verdict(action=pb.ACTION_ERROR, error="x"), H, stage)
        assert reply == Reply(("421 4.3.0 mx.test technical difficulties",), close=True)


@pytest.mark.parametrize(
    "bad",
    [
        None,
        pb.Verdict(),  # ACTION_UNSPECIFIED
        pb.Verdict(action=99),
        verdict(code=250),
        verdict(code=600),
        verdict(code=0),
    ],
    ids=["none", "unspecified", "unknown-action", "code-250", "code-600", "code-0"],
)
def test_no_usable_verdict_is_never_continue(bad) -> None:
    assert render(bad, H, Stage.MAIL) == Reply(
        ("451 4.3.0 mx.test policy service unavailable, try again later",)
    )
    assert render(bad, H, Stage.CONNECT) == Reply(
        ("421 4.3.0 mx.test policy service unavailable, try again later",), close=True
    )
    assert policy_unavailable(H, Stage.CONNECT).close


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


def test_encode_is_crlf_terminated_utf8() -> None:
    assert Reply(("550-a", "550 ü")).encode() == "550-a\r\n550 ü\r\n".encode()
