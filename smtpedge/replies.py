"""Verdicts to SMTP reply bytes: pure functions, the whole of SPEC.md section 3
(and the EHLO answer, the one reply the policy shapes by its extension list).

mode             code 421        any other code
If421            reply, close    reply; the session stays open
FollowWith421    reply, close    reply, "421 HOST disconnecting due to previous error", close
ForceDisconnect  reply, close    reply, close
"""

from __future__ import annotations

from dataclasses import dataclass

from policy.events import Stage
from policy.v1 import policy_pb2 as pb

GENERIC_TEXT = "rejected by policy"


@dataclass(frozen=True, slots=True)
class Reply:
    lines: tuple[str, ...]
    close: bool = False

    def encode(self) -> bytes:
        return "".join(line + "\r\n" for line in self.lines).encode("utf-8")


def ehlo_reply(hostname: str, extensions: list[str] | tuple[str, ...]) -> bytes:
    """The answer to EHLO: the host name, then the extensions, as one write."""
    lines = [hostname, *extensions]
    *init, last = lines
    return "".join([*(f"250-{line}\r\n" for line in init), f"250 {last}\r\n"]).encode("utf-8")


def reply_lines(code: int, text: str) -> tuple[str, ...]:
    """`CODE-line` for every line but the last, `CODE line` for the last."""
    parts = [line.removesuffix("\r") for line in (text or GENERIC_TEXT).split("\n")]
    *init, last = parts
    return (*(f"{code}-{line}" for line in init), f"{code} {last}")


def parse_replies(data: bytes) -> list[tuple[int, str]]:
    """The replies in bytes a session writes, as (code, text): the text's lines
    without their codes, joined by "\n" (what smtp_server_rewrite_response
    sees). Several replies may be in one write (a refusal and its 421)."""
    replies: list[tuple[int, str]] = []
    lines: list[str] = []
    for line in data.decode("utf-8", "replace").split("\r\n")[:-1]:
        lines.append(line[4:])
        if line[3:4] != "-":
            replies.append((int(line[:3]), "\n".join(lines)))
            lines = []
    return replies


def rewritten(code: int, text: str, verdict: pb.Verdict | None) -> bytes:
    """A reply as smtp_server_rewrite_response's verdict left it: its own code
    and text where the verdict kept them (or there was none)."""
    if verdict is not None and verdict.HasField("response"):
        if verdict.response.HasField("status"):
            code = verdict.response.status
        if verdict.response.HasField("text"):
            text = verdict.response.text
    return Reply(reply_lines(code, text)).encode()


def technical_difficulties(hostname: str) -> Reply:
    return Reply((f"421 4.3.0 {hostname} technical difficulties",), close=True)


def policy_unavailable(hostname: str, stage: Stage) -> Reply:
    text = f"4.3.0 {hostname} policy service unavailable, try again later"
    if stage is Stage.CONNECT:
        return Reply((f"421 {text}",), close=True)
    return Reply((f"451 {text}",))


def render(verdict: pb.Verdict | None, hostname: str, stage: Stage) -> Reply | None:
    """The reply a verdict calls for, or None when the command proceeds.

    No verdict, or one this edge cannot read, is never "continue": it gets the
    fail-mode reply. At the connection stage every refusal ends the session.
    """
    if verdict is None:
        return policy_unavailable(hostname, stage)
    action = verdict.action
    if action == pb.ACTION_CONTINUE:
        return None
    if action == pb.ACTION_ERROR:
        return technical_difficulties(hostname)
    if action not in (pb.ACTION_REJECT, pb.ACTION_DISCONNECT) or not 400 <= verdict.code <= 599:
        return policy_unavailable(hostname, stage)
    lines = reply_lines(verdict.code, verdict.text)
    mode = verdict.mode
    if verdict.code == 421 or mode == pb.DISCONNECT_MODE_FORCE_DISCONNECT:
        return Reply(lines, close=True)
    if mode == pb.DISCONNECT_MODE_FOLLOW_WITH_421:
        return Reply((*lines, f"421 {hostname} disconnecting due to previous error"), close=True)
    return Reply(lines, close=stage is Stage.CONNECT)
