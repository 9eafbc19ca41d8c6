"""The data phase as KumoMTA runs it, for the edge and the policy test runner.

smtp_server_data sees the whole transaction once; the transaction is then split
into batches of recipients (by smtp_server_split_transaction when the policy
returns batches, else by the listener's batch_handling); each batch becomes a
message of its own, with its own id (the first keeps the transaction's, which
smtp_server_data saw, so a single message is one id end to end) and trace header, that
smtp_server_message_received sees, changes and may refuse. A refusal of any one
refuses the whole DATA, so nothing is accepted until every batch has passed.
Every message starts from the message, message meta and envelope
smtp_server_data (and the split) left; msg:set_sender and msg:set_recipient at
smtp_server_message_received change that message's envelope alone.

`receive` knows nothing of SMTP replies, storage or how the policy is asked:
the caller passes `ask` (an event and its arguments to a verdict, or None when
none came) and gets back the messages to hand on, or the verdict that stopped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from policy.events import DATA, MESSAGE_RECEIVED, SPLIT_TRANSACTION, Event
from policy.mailboxes import is_mailbox
from policy.v1 import policy_pb2 as pb
from policy.v1.headers import message_after

# The answer to a transaction split into no message at all, as KumoMTA words it.
NO_MESSAGE = (550, "5.7.1 relaying not permitted")

Ask = Callable[[Event, Any], Awaitable["pb.Verdict | None"]]
# The trace header lines for a message (its id, its recipients), prepended
# before smtp_server_message_received sees it.
Trace = Callable[[str, list[str]], bytes]


@dataclass(frozen=True)
class Message:
    """One batch of the transaction, as it is to be stored or relayed."""

    message_id: str
    sender: str
    recipients: list[str]
    data: bytes
    msg_meta: dict[str, str]


@dataclass(frozen=True)
class Received:
    """The messages to hand on, or, when `stopped` is the event that did not
    let the data phase go on, its verdict (None: no verdict came). Not stopped
    and no message: the policy split the transaction into no batch at all."""

    messages: list[Message] = field(default_factory=list)
    stopped: Event | None = None
    verdict: pb.Verdict | None = None


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def split(recipients: list[str], handling: int) -> list[list[str]]:
    """The batches of `batch_handling`: one per recipient (BifurcateAlways, the
    default), or one per recipient domain, compared case-insensitively, in the
    order each domain first appears (BatchByDomain)."""
    if handling != pb.BATCH_HANDLING_BATCH_BY_DOMAIN:
        return [[r] for r in recipients]
    by_domain: dict[str, list[str]] = {}
    for recipient in recipients:
        by_domain.setdefault(_domain(recipient), []).append(recipient)
    return list(by_domain.values())


def _passes(verdict: pb.Verdict | None) -> bool:
    return verdict is not None and verdict.action == pb.ACTION_CONTINUE


@dataclass(frozen=True)
class Envelope:
    sender: str
    recipients: list[str]


def changed(envelope: Envelope, verdict: pb.Verdict) -> Envelope:
    """The envelope with a verdict's msg:set_sender and msg:set_recipient
    applied; ValueError for what is not a mailbox (the policy checks too:
    this keeps a broken daemon from putting anything else into an upstream's
    MAIL FROM or RCPT TO)."""
    if not verdict.HasField("envelope"):
        return envelope
    sender, recipients = envelope.sender, envelope.recipients
    if verdict.envelope.HasField("sender"):
        sender = verdict.envelope.sender
    if verdict.envelope.HasField("recipients"):
        recipients = list(verdict.envelope.recipients.addresses)
    bad = [a for a in recipients if not is_mailbox(a)]
    if sender and not is_mailbox(sender):
        bad.append(sender)
    if bad:
        raise ValueError(f"the policy set an envelope address that is not a mailbox: {bad[0]!r}")
    if not recipients:
        raise ValueError("the policy set an empty list of recipients")
    return Envelope(sender, recipients)


def _invalid(error: ValueError) -> pb.Verdict:
    return pb.Verdict(action=pb.ACTION_ERROR, error=str(error))


async def receive(
    ask: Ask,
    new_id: Callable[[], str],
    *,
    sender: str,
    recipients: list[str],
    data: bytes,
    handling: int,
    trace: Trace | None = None,
) -> Received:
    """The data phase of one transaction (see the module's docstring)."""
    envelope = Envelope(sender, recipients)
    base_id = new_id()
    verdict = await ask(DATA, DATA.arguments(message_id=base_id, data=data, **vars(envelope)))
    if not _passes(verdict):
        return Received(stopped=DATA, verdict=verdict)
    assert verdict is not None
    data = message_after(data, verdict)
    meta = dict(verdict.msg_meta_set)
    try:
        envelope = changed(envelope, verdict)
    except ValueError as e:
        return Received(stopped=DATA, verdict=_invalid(e))
    verdict = await ask(
        SPLIT_TRANSACTION,
        SPLIT_TRANSACTION.arguments(message_id=base_id, data=data, msg_meta=meta, **vars(envelope)),
    )
    if not _passes(verdict):
        return Received(stopped=SPLIT_TRANSACTION, verdict=verdict)
    assert verdict is not None
    try:
        envelope = changed(envelope, verdict)
    except ValueError as e:
        return Received(stopped=SPLIT_TRANSACTION, verdict=_invalid(e))
    if verdict.HasField("batches"):
        batches = [list(b.recipients) for b in verdict.batches.batches if b.recipients]
    else:
        batches = split(envelope.recipients, handling)
    messages = []
    for n, batch in enumerate(batches):
        message_id = new_id() if n else base_id
        body = trace(message_id, batch) + data if trace else data
        arguments = MESSAGE_RECEIVED.arguments(
            message_id=message_id,
            sender=envelope.sender,
            recipients=batch,
            data=body,
            msg_meta=meta,
        )
        verdict = await ask(MESSAGE_RECEIVED, arguments)
        if not _passes(verdict):
            return Received(stopped=MESSAGE_RECEIVED, verdict=verdict)
        assert verdict is not None
        try:
            own = changed(Envelope(envelope.sender, batch), verdict)
        except ValueError as e:
            return Received(stopped=MESSAGE_RECEIVED, verdict=_invalid(e))
        messages.append(
            Message(
                message_id,
                own.sender,
                own.recipients,
                message_after(body, verdict),
                meta | dict(verdict.msg_meta_set),
            )
        )
    return Received(messages, verdict=verdict)
