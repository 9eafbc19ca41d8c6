"""Message ids in KumoMTA's format: version 1 UUIDs as 32 hex digits, unique and
ordered by time within a process, with a random (multicast) node, never a MAC."""

from __future__ import annotations

import uuid

from policy.ids import new_id, new_message_id


def test_message_ids_are_version_1_uuids_without_dashes() -> None:
    ids = [new_message_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    parsed = [uuid.UUID(hex=i) for i in ids]
    assert all(len(i) == 32 and i == u.hex for i, u in zip(ids, parsed, strict=True))
    assert {u.version for u in parsed} == {1}
    assert [u.time for u in parsed] == sorted(u.time for u in parsed)
    assert len({u.node for u in parsed}) == 1 and parsed[0].node & (1 << 40)


def test_session_and_decision_ids_stay_16_hex_digits() -> None:
    assert len({new_id() for _ in range(1000)}) == 1000
    assert all(
        len(i) == 16 and set(i) <= set("0123456789abcdef") for i in (new_id() for _ in range(100))
    )
