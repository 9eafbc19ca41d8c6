"""Where the policy daemons are: gRPC targets for their addresses, and DNS.

An IP literal is its own target; a name goes through gRPC's DNS resolver (all
its addresses) until the edge's own resolution (`resolve`, re-run by the
balancer) gives one target per address, so long-lived streams spread over
every replica behind the name. A Unix socket is given as it is.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from policy.addresses import Address, ip_or_none, join

log = logging.getLogger("smtpedge.policy")


def channel_target(address: Address) -> str:
    if address.is_unix:
        return str(address)
    ip = ip_or_none(address.host)
    if ip is None:
        return f"dns:///{join(address.host, address.port)}"
    return f"ipv6:[{ip}]:{address.port}" if ip.version == 6 else f"ipv4:{ip}:{address.port}"


async def resolve(address: Address, timeout: float = 2.0) -> set[Address]:
    """The addresses a name resolves to, with its port (empty when it does not)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, ValueError) as e:  # UnicodeError: a malformed name
        log.debug("cannot resolve", extra={"server": str(address), "error": repr(e)})
        return set()
    return {Address(str(info[4][0]), address.port) for info in infos}
