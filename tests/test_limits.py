"""Hostile policies hit their limits; only their own evaluation fails.

Each hostile evaluation must end within its limit plus a small margin with
`421 4.3.0 ... technical difficulties`, be logged with the policy location,
and not hold up the sessions served meanwhile by the same daemon.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.procs import refused_start
from tests.smtpclient import RawClient

TECHNICAL_DIFFICULTIES = b"421 4.3.0 mx.test technical difficulties\r\n"

HOSTILE = r"""
kumo.on('smtp_server_mail_from', function(sender)
  local kind = sender.user
  if kind == 'loop' then
    while true do end
  elseif kind == 'pcall' then
    while true do pcall(function() while true do end end) end
  elseif kind == 'coroutine' then
    local co = coroutine.wrap(function() while true do pcall(coroutine.yield) end end)
    while true do pcall(co) end
  elseif kind == 'memory' then
    local t = {}
    for i = 1, math.huge do t[i] = string.rep('x', 1000) .. i end
  elseif kind == 'recursion' then
    local function deeper(n) return deeper(n + 1) + 1 end
    deeper(1)
  elseif kind == 'rep' then
    local s = string.rep('x', 1 << 40)
  end
  kumo.reject(550, 'served ' .. kind)
end)
"""

LIMIT_SECONDS = 1.5
MARGIN = 1.0


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    from tests.procs import start_daemon, start_edge

    workdir = tmp_path_factory.mktemp("hostile")
    policy = workdir / "policy.lua"
    policy.write_text(HOSTILE)
    daemon, address = start_daemon(
        policy,
        workdir,
        "--eval-timeout", str(LIMIT_SECONDS),
        "--eval-instructions", str(10**12),  # the clock, not the count, stops these
        "--max-memory", str(64 * 1024 * 1024),
    )  # fmt: skip
    edge, port = start_edge(address, workdir, "--policy-timeout", "10")
    yield daemon, port
    edge.stop()
    daemon.stop()


def mail_from(port: int, user: str) -> bytes:
    with RawClient(port, timeout=15) as client:
        client.reply()
        client.command(b"EHLO client.test")
        client.send(b"MAIL FROM:<" + user.encode() + b"@example.com>\r\nNOOP\r\n")
        reply = client.reply()
        return reply + client.rest_until_close() if reply.startswith(b"421") else reply


@pytest.mark.parametrize("kind", ["loop", "pcall", "coroutine", "memory", "recursion", "rep"])
def test_hostile_policy_fails_only_its_own_evaluation(hostile, kind: str) -> None:
    daemon, port = hostile
    result: dict[str, Any] = {}

    def run_hostile() -> None:
        began = time.monotonic()
        result["reply"] = mail_from(port, kind)
        result["seconds"] = time.monotonic() - began
        result["done_at"] = time.monotonic()

    hostile_session = threading.Thread(target=run_hostile)
    hostile_session.start()
    served: list[tuple[bytes, float]] = []
    while hostile_session.is_alive() and len(served) < 200:
        served.append((mail_from(port, "normal"), time.monotonic()))
    hostile_session.join(LIMIT_SECONDS + 10)

    assert result["reply"] == TECHNICAL_DIFFICULTIES
    assert result["seconds"] < LIMIT_SECONDS + MARGIN
    # Sessions served meanwhile got their normal answer, and did not wait for it.
    assert served, "no session was served while the hostile evaluation ran"
    assert all(reply == b"550 served normal\r\n" for reply, _ in served)
    if kind in ("loop", "pcall", "coroutine"):  # these run until their time limit
        finished_during = [at for _, at in served if at < result["done_at"]]
        assert len(finished_during) >= 5
    errors = [e for e in daemon.log_lines() if e.get("msg") == "policy error"]
    assert any("policy.lua:" in e["error"] for e in errors[-1:])
    assert mail_from(port, "after") == b"550 served after\r\n"


def test_the_instruction_budget_stops_a_loop(stack_factory) -> None:
    stack = stack_factory(
        "kumo.on('smtp_server_mail_from', function()\n  while true do end\nend)",
        daemon_args=("--eval-instructions", "2000000", "--eval-timeout", "30"),
    )
    client = stack.greeted()
    client.send(b"MAIL FROM:<a@example.com>\r\n")
    assert client.rest_until_close() == TECHNICAL_DIFFICULTIES
    (error,) = [e for e in stack.daemon.log_lines() if e.get("msg") == "policy error"]
    assert error["error"].startswith(
        "policy.lua:2: evaluation exceeded its limit of 2000000 instructions"
    )
    assert error["limit"] == "evaluation exceeded its limit of 2000000 instructions"


def test_an_endless_loop_at_load_is_refused(tmp_path, write_policy) -> None:
    path = write_policy("local n = 0\nwhile true do n = n + 1 end\n")
    result = refused_start(
        "policyd",
        "--policy",
        str(path),
        "--listen",
        "127.0.0.1:0",
        "--eval-instructions",
        "5000000",
    )
    assert result.returncode == 2
    assert "policy.lua:2: evaluation exceeded its limit of 5000000 instructions" in result.stderr


def test_kumo_sleep_suspends_only_its_own_evaluation(stack_factory) -> None:
    stack = stack_factory(
        r"""
kumo.on('smtp_server_mail_from', function(sender)
  if sender.user == 'slow' then kumo.sleep(1.0) end
  kumo.reject(550, 'done ' .. sender.user)
end)
""",
        "--policy-timeout", "5",
        daemon_args=("--eval-timeout", "3"),
    )  # fmt: skip
    slow: dict[str, Any] = {}

    def run_slow() -> None:
        slow["reply"] = mail_from(stack.port, "slow")
        slow["at"] = time.monotonic()

    thread = threading.Thread(target=run_slow)
    thread.start()
    time.sleep(0.1)
    fast = mail_from(stack.port, "fast")
    fast_at = time.monotonic()
    thread.join(10)
    assert fast == b"550 done fast\r\n"
    assert slow["reply"] == b"550 done slow\r\n"
    assert fast_at < slow["at"]
