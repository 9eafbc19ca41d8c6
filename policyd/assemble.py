"""A finished evaluation (an Outcome, in the policy's words) as a Verdict (the
contract's values): pure functions."""

from __future__ import annotations

from policy.v1 import policy_pb2 as pb
from policy.verdicts import ACTIONS, MODES
from policyd.extensions.listener import as_contract
from policyd.runtime import Outcome

_HEADER_OPS = {
    "prepend": pb.HeaderChange.OP_PREPEND,
    "append": pb.HeaderChange.OP_APPEND,
    "remove": pb.HeaderChange.OP_REMOVE,
}


def fill(verdict: pb.Verdict, outcome: Outcome) -> None:
    """Sets what the policy decided and changed on `verdict` (which already has
    its ids and revision)."""
    verdict.action = ACTIONS[outcome.action]
    if outcome.action == "error":
        verdict.error = outcome.error.splitlines()[0]
        return
    verdict.code = outcome.code
    verdict.text = outcome.text
    verdict.mode = MODES.get(outcome.mode, pb.DISCONNECT_MODE_UNSPECIFIED)
    verdict.auth_granted = outcome.auth
    if outcome.meta:
        verdict.meta_set.update(outcome.meta)
    if outcome.msg_meta:
        verdict.msg_meta_set.update(outcome.msg_meta)
    if outcome.headers:
        verdict.header_changes.extend(
            pb.HeaderChange(op=_HEADER_OPS[op], name=name, value=value)
            for op, name, value in outcome.headers
        )
    if outcome.data is not None:
        verdict.data = outcome.data
    if outcome.extensions is not None:
        verdict.ehlo_extensions.items.extend(outcome.extensions)
    if outcome.auth_info is not None:
        info = outcome.auth_info
        verdict.auth_info.authn_id, verdict.auth_info.authz_id = info.authn, info.authz
        verdict.auth_info.identities.extend(
            pb.Identity(identity=identity, context=context) for identity, context in info.identities
        )
        verdict.auth_info.groups.extend(info.groups)
    if outcome.batches is not None:
        verdict.batches.SetInParent()  # present even when empty: no message at all
        for batch in outcome.batches:
            verdict.batches.batches.add(recipients=batch)
    if outcome.listener is not None:
        verdict.listener.CopyFrom(as_contract(outcome.listener))
    if outcome.response is not None:  # None fields stay absent: kept as they were
        status, text = outcome.response
        verdict.response.CopyFrom(pb.Response(status=status, text=text))
    if outcome.envelope is not None:
        sender, recipients = outcome.envelope
        listed = None if recipients is None else pb.Recipients(addresses=recipients)
        verdict.envelope.CopyFrom(pb.Envelope(sender=sender, recipients=listed))


def continue_instead(verdict: pb.Verdict) -> pb.Verdict:
    """A dry run's answer: continue, keeping only the session's metadata changes
    (later events evaluate as they would have), not headers or extensions."""
    return pb.Verdict(
        request_id=verdict.request_id,
        action=pb.ACTION_CONTINUE,
        meta_set=verdict.meta_set,
        revision=verdict.revision,
        decision_id=verdict.decision_id,
        dry_run=True,
    )
