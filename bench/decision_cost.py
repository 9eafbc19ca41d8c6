"""What the decision log costs the daemon per decision, in process.

Over gRPC the log's share drowns in the machine's noise (the daemon spends
100-500 µs of CPU per decision on gRPC's hand-offs), so its cost is measured
where nothing else runs: one evaluation of the typical policy's MAIL FROM, in
the daemon's own Evaluator, with the log off and with it writing to a file in
the work directory, alternating; the CPU time per evaluation is the best of
several repeats, and the log's cost is the difference. Beside it, the cost of
writing one line alone (DecisionLog.record for a fixed verdict), which leaves
out what the log's allocations cost the rest of the evaluation.
"""

from __future__ import annotations

import asyncio
import time
import timeit
from pathlib import Path

from bench.daemon_load import request
from bench.stacks import POLICIES
from policy.events import MAIL_FROM
from policy.v1 import policy_pb2 as pb
from policyd.bridge import Bridge
from policyd.decisions import DecisionLog
from policyd.evaluate import Evaluator
from policyd.inputs import handler_inputs
from policyd.runtime import LuaPolicy
from policyd.source import PolicySource


async def _per_evaluation(evaluator: Evaluator, count: int) -> float:
    requests = [request(n) for n in range(count)]
    began = time.process_time()
    for one in requests:
        await evaluator.evaluate(one)
    return (time.process_time() - began) / count


async def _record_alone(log: DecisionLog, count: int, repeats: int) -> float:
    """Inside a running loop, as in the daemon (without one, every line is flushed)."""
    one = request(0)
    inputs = handler_inputs(one, MAIL_FROM, None)
    verdict = pb.Verdict(request_id=0, revision="r1", decision_id="d1")

    def record() -> None:
        log.record(one, MAIL_FROM, inputs, verdict, 0.0001)

    return min(timeit.repeat(record, number=count, repeat=repeats)) / count


def decision_cost(workdir: Path, count: int, repeats: int) -> dict:
    policy = LuaPolicy(PolicySource.at(POLICIES / "typical.lua"))
    log = DecisionLog(str(workdir / "decision-cost.jsonl"))
    without, with_log = Evaluator(policy, Bridge()), Evaluator(policy, Bridge(), decisions=log)
    best = {"off": float("inf"), "file": float("inf")}
    try:
        for _ in range(repeats):
            best["off"] = min(best["off"], asyncio.run(_per_evaluation(without, count)))
            best["file"] = min(best["file"], asyncio.run(_per_evaluation(with_log, count)))
        record = asyncio.run(_record_alone(log, count, repeats))
    finally:
        log.close()
    return {
        "record_us": record * 1e6,
        "evaluation_us_log_off": best["off"] * 1e6,
        "evaluation_us_log_file": best["file"] * 1e6,
        "decision_log_us": (best["file"] - best["off"]) * 1e6,
    }
