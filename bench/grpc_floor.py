"""The floor under a policy call: a bare grpc.aio stream round trip.

    python -m bench.grpc_floor serve --listen unix:PATH
    python -m bench.grpc_floor client --target unix:PATH --count 2000

An echo servicer with no protobuf and no work in a process of its own, and a
client in another with one bidirectional stream and one message in flight,
both on uvloop like the daemon and the edge. Its round trip is what gRPC
Python costs by itself, the least a policy call can add to an SMTP command;
the idle latency section shows it beside ours. It is measured with gRPC's
I/O engine as both programs choose it (iomgr, policy/io_engine.py) and with
grpcio's own default (EventEngine), each with the CPU both processes spend
per round trip. The client prints one JSON object with p50 and p99 in
milliseconds and its own CPU per round trip in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import psutil
import uvloop

from bench.smtp_load import percentile
from bench.stacks import cpu_seconds
from policy import io_engine
from tests.procs import Env, Proc, environment

METHOD = "/bench.Echo/Stream"
PAYLOAD = b"x" * 200  # about the size of one MAIL FROM request
WARM_UP = 200


async def echo(
    requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
) -> AsyncIterator[bytes]:
    async for message in requests:
        yield message


async def serve(listen: str) -> None:
    server = grpc.aio.server()
    handler: grpc.RpcMethodHandler = grpc.stream_stream_rpc_method_handler(echo)  # bytes in, out
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.Echo", {"Stream": handler}),)
    )
    port = server.add_insecure_port(listen)
    await server.start()
    address = listen if listen.startswith("unix:") else f"{listen.rsplit(':', 1)[0]}:{port}"
    print(json.dumps({"msg": "listening", "address": address}), file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await server.stop(0)


async def round_trips(target: str, count: int) -> dict[str, float]:
    async with grpc.aio.insecure_channel(target) as channel:
        call: grpc.aio.StreamStreamCall = channel.stream_stream(METHOD)()
        samples = []
        cpu = 0.0
        for n in range(WARM_UP + count):
            if n == WARM_UP:
                cpu = time.process_time()
            began = time.perf_counter()
            await call.write(PAYLOAD)
            await call.read()
            if n >= WARM_UP:
                samples.append(time.perf_counter() - began)
        cpu = time.process_time() - cpu
        await call.done_writing()
    return {
        "round_trips": count,
        "p50_ms": percentile(samples, 50) * 1000,
        "p99_ms": percentile(samples, 99) * 1000,
        "client_cpu_us": cpu / count * 1e6,
    }


ENGINES = {"iomgr": io_engine.IOMGR, "EventEngine": ""}  # ours, then grpcio's default


def measure(workdir: Path, count: int) -> dict[str, dict[str, float]]:
    """The floor over a Unix socket and over TCP loopback (which the benchmark's
    edge uses), on the engine the programs run; over TCP also on grpcio's default."""
    out = {}
    for name, transport, engine in (
        ("Unix socket", "unix", "iomgr"),
        ("TCP loopback", "tcp", "iomgr"),
        ("TCP loopback, grpcio's default engine (EventEngine)", "tcp", "EventEngine"),
    ):
        out[name] = _floor(workdir / f"grpc-floor-{transport}-{engine}", transport, engine, count)
    return out


def _floor(path: Path, transport: str, engine: str, count: int) -> dict[str, float]:
    env: Env = {io_engine.ENVIRONMENT: ENGINES[engine]}
    listen = f"unix:{path}.sock" if transport == "unix" else "127.0.0.1:0"
    server = Proc([sys.executable, "-m", "bench.grpc_floor", "serve", "--listen", listen],
                  path.with_suffix(".log"), env)  # fmt: skip
    try:
        target = server.wait_listening()
        process = psutil.Process(server.popen.pid)
        before = cpu_seconds(process)
        run = subprocess.run(
            [sys.executable, "-m", "bench.grpc_floor", "client", "--target", target,
             "--count", str(count)],
            capture_output=True, text=True, check=True, timeout=120, env=environment(env),
        )  # fmt: skip
        server_cpu = cpu_seconds(process) - before
    finally:
        server.stop()
    result = json.loads(run.stdout)
    result["server_cpu_us"] = server_cpu / (count + WARM_UP) * 1e6
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve").add_argument("--listen", required=True)
    client = sub.add_parser("client")
    client.add_argument("--target", required=True)
    client.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    if args.command == "serve":
        uvloop.run(serve(args.listen))
    else:
        print(json.dumps(uvloop.run(round_trips(args.target, args.count))))


if __name__ == "__main__":
    main()
