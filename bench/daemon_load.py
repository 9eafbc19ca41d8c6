"""gRPC load against a policy daemon alone; prints one JSON result.

    python -m bench.daemon_load --target HOST:PORT --concurrency 32 --seconds 5
    python -m bench.daemon_load --target HOST:PORT --rate 4000 --seconds 5

Closed loop (`--concurrency`: that many requests always in flight) measures
decisions per second; open loop (`--rate`: requests sent on a fixed schedule)
measures the latency per decision at a given rate. The requests are a typical
MAIL FROM, sent the way the edge sends them (batched over pooled streams) or,
with `--unary`, as one unary call each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import grpc

from policy.v1 import policy_pb2 as pb
from policy.v1 import policy_pb2_grpc as pb_grpc
from smtpedge.policy_client import PolicyClient


def request(n: int) -> pb.EvaluateRequest:
    return pb.EvaluateRequest(
        request_id=n,
        event="smtp_server_mail_from",
        client=pb.Client(edge_id="bench", hostname="mx.bench", listener="127.0.0.1:25"),
        session=pb.Session(
            id=f"s{n}", peer_ip="192.0.2.1", peer_port=40000, local_ip="127.0.0.1", local_port=25
        ),
        mail_from=pb.MailFromArgs(sender="sender@source.example"),
    )


class Unary:
    def __init__(self, target: str) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self.stub = pb_grpc.PolicyServiceStub(self.channel)

    async def call(self, n: int) -> pb.Verdict:
        return await self.stub.Evaluate(request(n), timeout=10)

    async def close(self) -> None:
        await self.channel.close()


class Streams:
    """The edge's own policy client: batched requests over pooled streams."""

    def __init__(self, target: str, streams: int) -> None:
        self.client = PolicyClient([target], streams)

    async def call(self, n: int) -> pb.Verdict:
        verdict = await self.client.evaluate(request(n), 10)
        assert verdict is not None
        return verdict

    async def close(self) -> None:
        await self.client.close()


async def closed_loop(caller: Unary, concurrency: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    counter = iter(range(10**12))

    async def worker() -> None:
        while time.monotonic() < deadline:
            began = time.perf_counter()
            await caller.call(next(counter))
            latencies.append(time.perf_counter() - began)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def open_loop(caller: Unary, rate: float, seconds: float) -> list[float]:
    latencies: list[float] = []
    tasks = []
    began = time.perf_counter()
    total = int(rate * seconds)

    async def one(n: int, due: float) -> None:
        await caller.call(n)
        latencies.append(time.perf_counter() - due)

    for n in range(total):
        due = began + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n, due)))
    await asyncio.gather(*tasks)
    return latencies


async def main_async(args: argparse.Namespace) -> dict:
    caller = Unary(args.target) if args.unary else Streams(args.target, args.streams)
    try:
        await closed_loop(caller, 4, 0.5)  # warm up (and let the streams come up)
        began = time.perf_counter()
        if args.rate:
            latencies = await open_loop(caller, args.rate, args.seconds)
        else:
            latencies = await closed_loop(caller, args.concurrency, args.seconds)
        elapsed = time.perf_counter() - began
    finally:
        await caller.close()
    latencies.sort()
    return {
        "decisions": len(latencies),
        "seconds": elapsed,
        "per_second": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=0)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--unary", action="store_true", help="one unary call per request")
    parser.add_argument("--streams", type=int, default=2, help="streams (connections) to use")
    args = parser.parse_args()
    try:
        import uvloop

        result = uvloop.run(main_async(args))
    except ImportError:
        result = asyncio.run(main_async(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
