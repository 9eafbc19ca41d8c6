"""Network addresses as both programs write and read them: pure functions.

`HOST:PORT` (a name or an IPv4 address), `[IPV6]:PORT`, and where a Unix
socket will do, `unix:PATH`. IPv6 literals need their brackets when a port
follows, so `::1:25` is refused rather than guessed at. "Local" means a Unix
socket or loopback (`localhost` included): where plaintext is safe.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Address:
    host: str = ""  # a name or an IP literal, without brackets
    port: int = 0
    path: str | None = None  # set for unix:PATH (host and port unused)

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.path is not None else join(self.host, self.port)

    @property
    def is_unix(self) -> bool:
        return self.path is not None

    @property
    def is_local(self) -> bool:
        """A Unix socket or a loopback address."""
        return self.is_unix or is_loopback(self.host)

    @property
    def is_name(self) -> bool:
        """A host name (to be resolved) rather than an IP literal or a socket path."""
        return not self.is_unix and ip_or_none(self.host) is None

    def with_port(self, port: int) -> Address:
        return Address(self.host, port)


def parse(text: str, *, unix: bool = False, default_port: int | None = None) -> Address:
    """`HOST:PORT` or `[IPV6]:PORT`; `unix:PATH` too with `unix`; a bare HOST (or
    IPv6 literal) too when there is a `default_port`. ValueError says what is wrong."""
    expected = "HOST:PORT, [IPV6]:PORT" + (" or unix:PATH" if unix else "")
    if text.startswith("unix:"):
        if not unix or len(text) == len("unix:"):
            raise ValueError(f"expected {expected}, got {text!r}")
        return Address(path=text[len("unix:") :])
    if default_port is not None and ip_or_none(text) is not None:
        return Address(text, default_port)  # a bare IP literal, IPv6 included
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not isinstance(ip_or_none(host), ipaddress.IPv6Address):
            raise ValueError(f"expected an IPv6 address in brackets, got {text!r}")
        if not rest and default_port is not None:
            return Address(host, default_port)
        if not rest.startswith(":"):
            raise ValueError(f"expected {expected}, got {text!r}")
        return Address(host, _port(rest[1:], text))
    host, colon, port = text.rpartition(":")
    if not colon:
        if default_port is not None and text:
            return Address(text, default_port)
        raise ValueError(f"expected {expected}, got {text!r}")
    if ":" in host:
        raise ValueError(f"IPv6 addresses need brackets before a port: [{host}]:{port}")
    if not host:
        raise ValueError(f"expected {expected}, got {text!r} (no host)")
    return Address(host, _port(port, text))


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise ValueError(f"expected a port from 0 to 65535 in {whole!r}")
    return int(text)


def join(host: str, port: int) -> str:
    """`host:port`, with brackets around an IPv6 literal."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def ip_or_none(text: str) -> IP | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    ip = ip_or_none(host.strip("[]"))
    return ip is not None and ip.is_loopback


def parse_ip(text: str) -> IP:
    """The IP address in `ip`, `ip:port` or `[ipv6]:port` (conn_meta's received_from,
    say); an IPv4 client on a dual-stack listener (`::ffff:a.b.c.d`) as IPv4."""
    ip = ip_or_none(text)
    if ip is None:
        try:
            ip = ip_or_none(parse(text).host)
        except ValueError:
            ip = None
    if ip is None:
        raise ValueError(f"not an IP address: {text!r}")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def grpc_peer(peer: str) -> Address | None:
    """A gRPC peer string (`ipv4:127.0.0.1:5000`, `ipv6:[::1]:5000`, `unix:/path`)
    as an Address; None for kinds it does not know."""
    kind, _, rest = peer.partition(":")
    try:
        if kind == "unix":
            return Address(path=rest)
        if kind in ("ipv4", "ipv6"):
            return parse(rest)
    except ValueError:
        return None
    return None
