"""gRPC load against a policy daemon alone; prints one JSON result.

    python -m bench.daemon_load --target HOST:PORT --concurrency 32 --seconds 5
    python -m bench.daemon_load --target HOST:PORT --rate 4000 --seconds 5

Closed loop (`--concurrency`: that many requests always in flight) measures
decisions per second; open loop (`--rate`: requests sent on a fixed schedule)
measures the latency per decision at a given rate. The requests are a typical
MAIL FROM. By default they go over one Stream call from a lean client (no
per-request tasks or futures), so the daemon is what is measured; `--client
edge` uses the edge's own policy client instead, `--client unary` one unary
call per request. With `--pid` the result also has that process's CPU seconds
over the measured loop alone (not the warm-up), for CPU per decision.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time

import grpc
import psutil

from bench.stacks import cpu_seconds
from policy import addresses
from policy.v1 import policy_pb2 as pb
from policy.v1 import policy_pb2_grpc as pb_grpc
from smtpedge.policy_client import PolicyClient

TICK = 0.001  # the event loop's timer resolution: open-loop requests go out per tick


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


class Lean:
    """One Stream call; requests in batches, latencies from the send to the verdict."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self.call = pb_grpc.PolicyServiceStub(self.channel).Stream()
        self.sent: dict[int, float] = {}
        self.latencies: list[float] = []
        self.ids = itertools.count(1)
        self.answered = asyncio.Event()

    async def send(self, count: int) -> None:
        now = time.perf_counter()
        batch = []
        for _ in range(count):
            n = next(self.ids)
            self.sent[n] = now
            batch.append(request(n))
        await self.call.write(pb.RequestBatch(requests=batch))

    async def receive(self, refill: bool) -> None:
        async for replies in self.call:
            now = time.perf_counter()
            for verdict in replies.verdicts:
                self.latencies.append(now - self.sent.pop(verdict.request_id))
            if refill and replies.verdicts:
                await self.send(len(replies.verdicts))
            if not self.sent:
                self.answered.set()

    async def closed_loop(self, concurrency: int, seconds: float) -> None:
        receiver = asyncio.create_task(self.receive(refill=True))
        await self.send(concurrency)
        await asyncio.sleep(seconds)
        receiver.cancel()

    async def open_loop(self, rate: float, seconds: float) -> None:
        receiver = asyncio.create_task(self.receive(refill=False))
        began = time.perf_counter()
        sent = 0
        while sent < rate * seconds:
            due = int((time.perf_counter() - began) * rate) + 1 - sent
            if due > 0:
                await self.send(due)
                sent += due
            await asyncio.sleep(TICK)
        self.answered.clear()
        if self.sent:
            await self.answered.wait()
        receiver.cancel()

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close()


class PerRequest:
    """Through the edge's policy client, or unary calls: a task per request."""

    def __init__(self, target: str, kind: str) -> None:
        self.latencies: list[float] = []
        if kind == "unary":
            self.channel = grpc.aio.insecure_channel(target)
            stub = pb_grpc.PolicyServiceStub(self.channel)
            self.call = lambda n: stub.Evaluate(request(n), timeout=10)
            self.client = None
        else:
            client = self.client = PolicyClient([addresses.parse(target, unix=True)], 2)
            self.call = lambda n: client.evaluate(request(n), 10)

    async def one(self, n: int) -> None:
        sent = time.perf_counter()
        await self.call(n)
        self.latencies.append(time.perf_counter() - sent)

    async def closed_loop(self, concurrency: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        counter = itertools.count()

        async def worker() -> None:
            while time.monotonic() < deadline:
                await self.one(next(counter))

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def open_loop(self, rate: float, seconds: float) -> None:
        tasks = []
        began = time.perf_counter()
        for n in range(int(rate * seconds)):
            delay = began + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.one(n)))
        await asyncio.gather(*tasks)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
        else:
            await self.channel.close()


async def main_async(args: argparse.Namespace) -> dict:
    async def client() -> Lean | PerRequest:
        return Lean(args.target) if args.client == "lean" else PerRequest(args.target, args.client)

    warm = await client()
    await warm.closed_loop(4, 0.5)
    await warm.close()
    load = await client()
    daemon = psutil.Process(args.pid) if args.pid else None
    cpu = cpu_seconds(daemon) if daemon is not None else 0.0
    began = time.perf_counter()
    if args.rate:
        await load.open_loop(args.rate, args.seconds)
    else:
        await load.closed_loop(args.concurrency, args.seconds)
    elapsed = time.perf_counter() - began
    if daemon is not None:
        cpu = cpu_seconds(daemon) - cpu
    await load.close()
    latencies = sorted(load.latencies)
    return {
        "client": args.client,
        "daemon_cpu_seconds": cpu,
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
    parser.add_argument("--client", choices=["lean", "edge", "unary"], default="lean")
    parser.add_argument("--pid", type=int, default=0, help="the daemon's, to read its CPU")
    args = parser.parse_args()
    try:
        import uvloop

        result = uvloop.run(main_async(args))
    except ImportError:
        result = asyncio.run(main_async(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
