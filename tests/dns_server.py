"""A small authoritative DNS server for tests, on a loopback UDP port.

    python -m tests.dns_server ZONE.json

The zone is JSON: {"name": {"A": [...], "AAAA": [...], "TXT": [[strings...]],
"MX": ["10 mx.example."], "PTR": ["host.example."], "ttl": 60, "delay": 0}, ...};
a name with "rcode": "SERVFAIL" (or another rcode) answers with that; "delay" holds
its answers back that many seconds (others are answered meanwhile). Names not in it
are NXDOMAIN, with an SOA whose minimum is "negative_ttl" (top-level key,
default 60). The first line on stdout is {"msg": "listening", "port": N}; then
one JSON line per query received, {"name": ..., "type": ...}, so tests can
count what reached the server.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

SOA = "ns.test. hostmaster.test. 1 3600 600 86400 {minimum}"


def answer(zone: dict[str, Any], wire: bytes) -> bytes:
    query = dns.message.from_wire(wire)
    question = query.question[0]
    name = question.name.to_text().lower().rstrip(".")
    rdtype = dns.rdatatype.to_text(question.rdtype)
    print(json.dumps({"name": name, "type": rdtype}), flush=True)
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    entry = zone.get(name)
    negative_ttl = int(zone.get("negative_ttl", 60))
    if entry is None:
        response.set_rcode(dns.rcode.NXDOMAIN)
    elif "rcode" in entry:
        response.set_rcode(dns.rcode.from_text(entry["rcode"]))
        return response.to_wire()
    elif rdtype in entry:
        texts = []
        for value in entry[rdtype]:
            if rdtype == "TXT":
                value = " ".join(json.dumps(part) for part in value)
            texts.append(value)
        rrset = dns.rrset.from_text_list(
            question.name, int(entry.get("ttl", 60)), dns.rdataclass.IN, question.rdtype, texts
        )
        response.answer.append(rrset)
        return response.to_wire()
    soa = dns.rrset.from_text("test.", negative_ttl, "IN", "SOA", SOA.format(minimum=negative_ttl))
    response.authority.append(soa)
    return response.to_wire()


class Server(asyncio.DatagramProtocol):
    def __init__(self, zone: dict[str, Any]) -> None:
        self.zone = zone

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = answer(self.zone, data)
        name = dns.message.from_wire(data).question[0].name.to_text().lower().rstrip(".")
        delay = float(self.zone.get(name, {}).get("delay", 0))
        send = self.transport.sendto  # type: ignore[attr-defined]
        asyncio.get_running_loop().call_later(delay, send, reply, addr)


async def main(zone_file: str) -> None:
    with open(zone_file) as f:
        zone = {k.lower().rstrip("."): v for k, v in json.load(f).items()}
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: Server(zone), local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    print(json.dumps({"msg": "listening", "port": port}), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
