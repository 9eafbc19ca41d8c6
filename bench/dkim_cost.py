"""What msg:dkim_verify costs the daemon per verification, by message size.

In process, through the daemon's own host function (Bridge.dkim_verify: keys
from the resolver's cache, hashing in a worker thread) on messages of 10 KB,
100 KB, 1 MB and 10 MB signed rsa-sha256 relaxed/relaxed by our signer: CPU
seconds of the whole process (worker threads included) per verification, the
best of a few repeats, and the wall time. `python -m bench.dkim_cost`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from policyd.bridge import Bridge
from policyd.dns.lookups import Dns
from policyd.dns.sources import StaticSource
from policyd.mailauth.dkim_sign import Signer, sign

SIZES = (10_000, 100_000, 1_000_000, 10_000_000)


def _setup() -> tuple[Bridge, Signer]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = "v=DKIM1; k=rsa; p=" + base64.b64encode(spki).decode()
    dns = Dns(StaticSource({"bench._domainkey.example.com": {"TXT": [record]}}))
    return Bridge(dns=dns), Signer("example.com", "bench", ("From", "To", "Subject"), key)


def message(size: int, signer: Signer) -> str:
    line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
    body = line * (size // len(line) + 1)
    data = b"From: a@example.com\r\nTo: b@example.net\r\nSubject: bench\r\n\r\n" + body
    signed = b"DKIM-Signature: " + sign(data, signer).encode() + b"\r\n" + data
    return signed.decode("latin-1")  # as support.binary hands message data over


async def _measure(bridge: Bridge, data: str, repeats: int) -> tuple[float, float]:
    best_cpu = best_wall = float("inf")
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        (results,) = await bridge.dkim_verify(data)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
        assert results[0]["result"] == "pass", results
    return best_cpu, best_wall


def run(sizes: tuple[int, ...] = SIZES, repeats: int = 5) -> list[dict[str, float]]:
    bridge, signer = _setup()
    out = []
    for size in sizes:
        cpu, wall = asyncio.run(_measure(bridge, message(size, signer), repeats))
        out.append({"bytes": size, "cpu_ms": cpu * 1000, "wall_ms": wall * 1000})
    return out


def table(rows: list[dict[str, float]]) -> str:
    lines = ["| message | daemon CPU ms / verification | wall ms |", "|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['bytes']:,} B | {row['cpu_ms']:.2f} | {row['wall_ms']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    print(table(run(repeats=parser.parse_args().repeats)))


if __name__ == "__main__":
    main()
