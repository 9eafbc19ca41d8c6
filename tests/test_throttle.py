"""Throttle specs and GCRA, checked against hand-computed values with a controlled clock."""

from __future__ import annotations

import asyncio

import pytest

from policy.v1 import policy_pb2 as pb
from policyd.bridge import Bridge
from policyd.cases import FakeClock
from policyd.evaluate import Evaluator
from policyd.runtime import LuaPolicy
from policyd.source import PolicyError, PolicySource
from policyd.throttle import LocalThrottles, Result, SpecError, Throttles, ThrottleSpec, gcra


@pytest.mark.parametrize(
    ("text", "limit", "period", "burst", "local"),
    [
        ("10/min", 10, 60, None, False),
        ("10/m", 10, 60, None, False),
        ("10/minute", 10, 60, None, False),
        ("5/s", 5, 1, None, False),
        ("5/sec", 5, 1, None, False),
        ("5/second", 5, 1, None, False),
        ("100/h", 100, 3600, None, False),
        ("100/hr", 100, 3600, None, False),
        ("100/hour", 100, 3600, None, False),
        ("7/d", 7, 86400, None, False),
        ("7/day", 7, 86400, None, False),
        ("1_000/hr", 1000, 3600, None, False),
        ("1,000/hour", 1000, 3600, None, False),
        ("1_0,0/h", 100, 3600, None, False),
        ("20/30minute", 20, 1800, None, False),
        ("3/2d", 3, 172800, None, False),
        ("local:20/30minute", 20, 1800, None, True),
        ("10/min,max_burst=2", 10, 60, 2, False),
        ("local:1_000/5m,max_burst=1_0", 1000, 300, 10, True),
    ],
)
def test_spec_forms(text, limit, period, burst, local) -> None:
    assert ThrottleSpec.parse(text) == ThrottleSpec(limit, period, burst, local)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected QUANTITY/PERIOD"),
        ("10", "expected QUANTITY/PERIOD"),
        ("ten/min", "invalid quantity 'ten'"),
        ("-5/min", "invalid quantity '-5'"),
        ("/min", "invalid quantity ''"),
        ("10/", "unknown period ''"),
        ("10/fortnight", "unknown period 'fortnight'"),
        ("10/m in", "unknown period 'm in'"),
        ("10/min2", "unknown period 'min2'"),
        ("0/min", "must be positive"),
        ("10/0min", "must be positive"),
        ("10/min,max_burst=0", "must be positive"),
        ("10/min,max_burst=x", "invalid max_burst 'x'"),
        ("remote:10/min", "invalid quantity 'remote:10'"),
    ],
)
def test_bad_specs_say_what_is_wrong(text, message) -> None:
    with pytest.raises(SpecError) as err:
        ThrottleSpec.parse(text)
    assert message in str(err.value)


def test_key_is_kumomtas() -> None:
    assert ThrottleSpec.parse("10/min").key("sender") == "lua-user-throttle-sender:10:10:60"
    assert ThrottleSpec.parse("local:10/2h,max_burst=3").key("x") == "lua-user-throttle-x:10:3:7200"


def run(store: LocalThrottles, spec: ThrottleSpec, clock: FakeClock, at: float) -> Result:
    clock.now = at
    return store.use("k", spec)


def test_gcra_full_burst_then_one_per_interval() -> None:
    """10/min: interval 6 s, burst 10 (offset 60 s)."""
    spec = ThrottleSpec.parse("10/min")
    clock = FakeClock(0.0)
    store = LocalThrottles(clock.time)
    allowed = [run(store, spec, clock, 0.0) for _ in range(10)]
    assert [r.remaining for r in allowed] == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    assert [r.reset_after for r in allowed] == [6, 12, 18, 24, 30, 36, 42, 48, 54, 60]
    assert all(not r.throttled and r.retry_after is None and r.limit == 11 for r in allowed)
    # The 11th at once: TAT 60, allow_at 6, so wait 6 s.
    assert run(store, spec, clock, 0.0) == Result(True, 11, 0, 60, 6)
    # 2.5 s later: 3.5 s to wait (rounded up to 4), reset in 57.5 (58).
    assert run(store, spec, clock, 2.5) == Result(True, 11, 0, 58, 4)
    # At 6 s one more is allowed, then refused again.
    assert run(store, spec, clock, 6.0) == Result(False, 11, 0, 60, None)
    assert run(store, spec, clock, 6.0) == Result(True, 11, 0, 60, 6)
    # After a full reset, the whole burst is back.
    assert run(store, spec, clock, 200.0) == Result(False, 11, 9, 6, None)


def test_gcra_with_max_burst() -> None:
    """10/min,max_burst=2: interval 6 s, offset 12 s."""
    spec = ThrottleSpec.parse("10/min,max_burst=2")
    clock = FakeClock(100.0)
    store = LocalThrottles(clock.time)
    assert run(store, spec, clock, 100.0) == Result(False, 3, 1, 6, None)
    assert run(store, spec, clock, 100.0) == Result(False, 3, 0, 12, None)
    assert run(store, spec, clock, 100.0) == Result(True, 3, 0, 12, 6)
    assert run(store, spec, clock, 103.0) == Result(True, 3, 0, 9, 3)
    assert run(store, spec, clock, 106.0) == Result(False, 3, 0, 12, None)


def test_gcra_is_pure() -> None:
    spec = ThrottleSpec.parse("2/s")
    # TATs are exact: nanoseconds times the limit (10.5 s of a 2/s throttle)
    result, tat = gcra(None, 10.0, spec)
    assert (result, tat) == (Result(False, 3, 1, 1, None), 21 * 10**9)
    result, tat = gcra(22 * 10**9, 10.0, spec)
    assert (result, tat) == (Result(True, 3, 0, 1, 1), None)


def evaluate(policy_text: str, write_policy, sender: str = "a@b.c") -> pb.Verdict:
    policy = LuaPolicy(PolicySource.at(write_policy(policy_text)))
    clock = FakeClock()
    evaluator = Evaluator(policy, Bridge(Throttles(clock=clock.time), sleep=clock.sleep))
    request = pb.EvaluateRequest(
        event="smtp_server_mail_from", mail_from=pb.MailFromArgs(sender=sender)
    )
    return asyncio.run(evaluator.evaluate(request))


def test_a_bad_spec_at_top_level_refuses_the_policy(write_policy) -> None:
    with pytest.raises(PolicyError) as err:
        LuaPolicy(
            PolicySource.at(write_policy("\nlocal t = kumo.make_throttle('x', '10/fortnight')\n"))
        )
    assert str(err.value).startswith(
        "policy.lua:2: kumo.make_throttle('x', '10/fortnight'): unknown period 'fortnight'"
    )


def test_a_bad_spec_in_a_handler_is_a_clear_error(write_policy) -> None:
    verdict = evaluate(
        "kumo.on('smtp_server_mail_from', function()\n  kumo.make_throttle('x', 'lots/min')\nend)",
        write_policy,
    )
    assert verdict.action == pb.ACTION_ERROR
    assert verdict.error.startswith(
        "policy.lua:2: kumo.make_throttle('x', 'lots/min'): invalid quantity 'lots'"
    )


def test_the_result_table_in_lua(write_policy) -> None:
    verdict = evaluate(
        r"""
local t = kumo.make_throttle('pair', '2/min')
kumo.on('smtp_server_mail_from', function()
  local out = {}
  for i = 1, 3 do
    local r = t:throttle()
    out[i] = ('%s %d %d %d.%d %s'):format(tostring(r.throttled), r.limit, r.remaining,
      r.reset_after.secs, r.reset_after.nanos, r.retry_after and r.retry_after.secs or 'nil')
  end
  kumo.reject(550, table.concat(out, '|'))
end)
""",
        write_policy,
    )
    # durations as KumoMTA hands them to Lua: Rust's Duration, {secs, nanos}
    assert verdict.text == "false 3 1 30.0 nil|false 3 0 60.0 nil|true 3 0 60.0 30"


def test_fifty_a_minute_allows_exactly_fifty_at_one_instant() -> None:
    """Exact arithmetic: 50 intervals of 1.2 s are one minute, not a little more."""
    spec = ThrottleSpec.parse("50/minute")
    for start in (0.0, 1_700_000_000.0, 1_700_000_000.3):
        clock = FakeClock(start)
        store = LocalThrottles(clock.time)
        results = [store.use("k", spec) for _ in range(51)]
        assert [r.throttled for r in results] == [False] * 50 + [True], start
        assert results[49].remaining == 0 and results[50].retry_after == 2  # 1.2 s, rounded up
        clock.now = start + 1.2  # one interval later, exactly one more
        assert [store.use("k", spec).throttled for _ in range(2)] == [False, True]


def test_explain_words_the_spec_as_kumomta_does() -> None:
    from policyd.extensions.throttle import explain

    assert explain(ThrottleSpec.parse("500/d,max_burst=10")) == (
        "500/d,max_burst=10\n"
        "explicit burst rate 10 every 2m 52s 800ms, or: 0.058/s, 4/m, 209/h, 5,000/d "
        "in that period.\n"
        "overall rate 0.006/s, 0.347/m, 21/h, 500/d"
    )
    assert explain(ThrottleSpec.parse("local:20/30min")).startswith(
        "local:20/1800s\nimplied burst rate 20 every 1m 30s, or: "
    )


SLEEPING = r"""
local quick = kumo.make_throttle('quick', '10/s,max_burst=1')
local slow = kumo.make_throttle('slow', '1/minute')
kumo.on('smtp_server_mail_from', function(sender)
  local throttle = sender.user == 'slow' and slow or quick
  kumo.reject(550, 'waited ' .. tostring(throttle:sleep_if_throttled()) .. ' / '
    .. string.match(throttle:explain(), '^[^\n]*'))
end)
"""


def test_sleep_if_throttled_waits_within_the_deadline_or_refuses(stack_factory) -> None:
    """A wait of a second (KumoMTA's retry_after is whole seconds) fits the
    evaluation's deadline; a minute does not, and the command is refused at once
    with 451 rather than left to time out."""
    stack = stack_factory(SLEEPING, "--policy-timeout", "4", daemon_args=("--eval-timeout", "3"))
    with stack.greeted() as client:
        assert (
            client.command(b"MAIL FROM:<a@example.com>")
            == b"550 waited false / 10/s,max_burst=1\r\n"
        )
        assert (
            client.command(b"MAIL FROM:<a@example.com>")
            == b"550 waited true / 10/s,max_burst=1\r\n"
        )
        assert client.command(b"MAIL FROM:<slow@example.com>") == b"550 waited false / 1/m\r\n"
        assert client.command(b"MAIL FROM:<slow@example.com>") == (
            b"451 4.4.5 rate limited, try again in 60 seconds\r\n"
        )
