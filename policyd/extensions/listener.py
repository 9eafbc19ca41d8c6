"""kumo.start_esmtp_listener and kumo.make_listener_domain: reception as a
KumoMTA policy shapes it, and KumoMTA's relaying rule.

A listener's parameters that shape an SMTP session reach the edges through
PolicyInfo (policyd/service.py); the relaying check runs in the daemon before
smtp_server_rcpt_to (ext/listener.lua): the peer is in the listener's
relay_hosts, or the sender's domain has relay_from covering the peer, or the
recipient's domain has relay_to. Parameters that configure what the edge's
own flags configure here (TLS, timeouts, proxy protocol) are accepted with a
warning; unknown ones are refused, as KumoMTA refuses them.
"""

from __future__ import annotations

import ipaddress
import logging
from functools import lru_cache
from typing import Any

from policy.addresses import parse, parse_ip
from policy.listeners import for_port
from policy.v1 import policy_pb2 as pb
from policyd.extensions import Context, HostFunctions, to_python

log = logging.getLogger("policyd.policy")

DEFAULT_RELAY_HOSTS = ("127.0.0.1", "::1")
BATCH_HANDLING = ("BifurcateAlways", "BatchByDomain")
REPORT_DISPOSITIONS = ("Ignore", "LogThenDrop", "LogThenRelay")
_SIZES = ("max_message_size", "max_recipients_per_message", "max_messages_per_connection")
_TRACE = ("received_header", "supplemental_header", "header_name", "include_meta_names")
# KumoMTA's listener parameters that this service configures otherwise.
IGNORED = {
    "tls_certificate": "the edge's --tls-cert",
    "tls_private_key": "the edge's --tls-key",
    "tls_required_client_ca": "the edge's flags",
    "client_timeout": "the edge's timeouts",
    "data_processing_timeout": "the edge's timeouts",
    "data_buffer_size": "the edge",
    "line_length_hard_limit": "the edge (RFC 5321's limits)",
    "invalid_line_endings": "the edge",
    "max_connections": "the edge's --max-connections",
    "require_proxy_protocol": "the edge",
    "allow_xclient": "nothing (XCLIENT is not offered)",
    "deferred_spool": "nothing (the edge hands mail on durably before its reply)",
    "deferred_queue": "nothing",
    "meta": "nothing yet",
    "peer": "nothing yet (the top-level parameters apply to every peer)",
    "via": "nothing yet (the top-level parameters apply to every address)",
}
KNOWN = frozenset(
    ("listen", "hostname", "banner", "relay_hosts", "batch_handling", "trace_headers", *_SIZES)
)


@lru_cache(maxsize=1024)
def networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """CIDRs as KumoMTA reads them: strict (no host bits), a bare IP as one host."""
    out = []
    for text in cidrs:
        try:
            out.append(ipaddress.ip_network(text, strict=True))
        except ValueError as e:
            raise ValueError(f"{text!r} is not an IP address or CIDR block ({e})") from None
    return tuple(out)


def covers(cidrs: tuple[str, ...], peer: str) -> bool:
    ip = parse_ip(peer)
    return any(ip in net for net in networks(cidrs))


def _cidr_list(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, dict) and not value:
        value = []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} must be a list of IP addresses or CIDR blocks")
    networks(tuple(value))
    return tuple(value)


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer")
    return value


def _checked_keys(given: Any, known: frozenset[str], warn: Any, what: str) -> dict[str, Any]:
    if not isinstance(given, dict):
        raise ValueError("the parameters must be a table {listen = 'ip:port', ...}")
    unknown = sorted(str(k) for k in given if k not in known and k not in IGNORED)
    if unknown:
        raise ValueError(f"unknown parameter {', '.join(unknown)}")
    for key in sorted(set(given) & set(IGNORED) - known):
        warn(f"{what}: {key} is accepted and ignored here ({IGNORED[key]})")
    return given


def listener(given: Any, warn: Any) -> dict[str, Any]:
    """One listener's parameters, checked; ignored ones warned about."""
    given = _checked_keys(given, KNOWN, warn, "kumo.start_esmtp_listener")
    listen = given.get("listen", "127.0.0.1:2025")
    try:
        port = parse(listen).port if isinstance(listen, str) else None
    except ValueError:
        port = None
    if port is None:
        raise ValueError(f"listen must be 'ip:port', got {listen!r}")
    out: dict[str, Any] = {"listen": listen, "port": port, **_shaping(given, warn)}
    out["relay_hosts"] = _cidr_list(
        given.get("relay_hosts", list(DEFAULT_RELAY_HOSTS)), "relay_hosts"
    )
    out.setdefault("batch_handling", "BifurcateAlways")
    return out


# What smtp_server_get_dynamic_parameters may set for one connection: what
# shapes the edge's session (relaying stays the listener's: the daemon checks
# it at every RCPT, from the policy's listener).
DYNAMIC = frozenset(("hostname", "banner", "batch_handling", "trace_headers", "via", *_SIZES))


def dynamic(given: Any, local_ip: str, warn: Any) -> dict[str, Any]:
    """The overrides smtp_server_get_dynamic_parameters returned, checked, with
    the `via` block of the most specific CIDR holding the local address over
    the rest (KumoMTA's cidr-map)."""
    what = "smtp_server_get_dynamic_parameters"
    given = _checked_keys(given, DYNAMIC, warn, what)
    out = _shaping(given, warn)
    via = given.get("via", {})
    if not isinstance(via, dict):
        raise ValueError("via must be a table of listener parameters keyed by IP or CIDR")
    blocks = {networks((str(cidr),))[0]: block for cidr, block in via.items()}
    ip = parse_ip(local_ip)
    holding = [net for net in blocks if ip in net]
    if holding:
        best = max(holding, key=lambda net: net.prefixlen)
        inner = DYNAMIC - {"via"}
        out |= _shaping(_checked_keys(blocks[best], inner, warn, f"{what} via"), warn)
    return out


def _shaping(given: dict[str, Any], warn: Any) -> dict[str, Any]:
    """The parameters that shape a session, checked (only those given)."""
    out: dict[str, Any] = {}
    for key in ("hostname", "banner"):
        if key in given:
            if not isinstance(given[key], str) or "\r" in given[key] or "\n" in given[key]:
                raise ValueError(f"{key} must be a one-line string")
            out[key] = given[key]
    for key in _SIZES:
        if key in given:
            out[key] = _count(given[key], key)
    if "batch_handling" in given:
        batch = given["batch_handling"]
        if batch not in BATCH_HANDLING:
            raise ValueError(f"batch_handling must be {' or '.join(BATCH_HANDLING)}, got {batch!r}")
        out["batch_handling"] = batch
    trace = given.get("trace_headers", {})
    if not isinstance(trace, dict) or any(k not in _TRACE for k in trace):
        raise ValueError(f"trace_headers must be a table of {', '.join(_TRACE)}")
    if "received_header" in trace:
        if not isinstance(trace["received_header"], bool):
            raise ValueError("trace_headers.received_header must be a boolean")
        out["received_header"] = trace["received_header"]
    if trace.get("supplemental_header", False):
        warn("kumo.start_esmtp_listener: trace_headers.supplemental_header is not added here")
    return out


_BATCH = {
    "BifurcateAlways": pb.BATCH_HANDLING_BIFURCATE_ALWAYS,
    "BatchByDomain": pb.BATCH_HANDLING_BATCH_BY_DOMAIN,
}


def as_contract(params: dict[str, Any]) -> pb.Listener:
    """A checked listener as the edges are told of it."""
    names = ("listen", "hostname", "banner", *_SIZES, "received_header")
    batch = params.get("batch_handling")
    return pb.Listener(
        **{k: params[k] for k in names if k in params},
        batch_handling=_BATCH[batch] if batch else pb.BATCH_HANDLING_UNSPECIFIED,
    )


def _disposition(value: Any, name: str) -> str:
    if isinstance(value, bool):
        return "LogThenRelay" if value else "Ignore"
    if value not in REPORT_DISPOSITIONS:
        raise ValueError(f"{name} must be a boolean or one of {', '.join(REPORT_DISPOSITIONS)}")
    return str(value)


def domain(given: Any) -> dict[str, Any]:
    """kumo.make_listener_domain's parameters, checked."""
    if not isinstance(given, dict):
        raise ValueError("the parameters must be a table {relay_to = ..., relay_from = ...}")
    allowed = ("relay_to", "relay_from", "log_oob", "log_arf", "ttl")
    unknown = sorted(str(k) for k in given if k not in allowed)
    if unknown:
        raise ValueError(f"unknown parameter {', '.join(unknown)}")
    relay_to = given.get("relay_to", False)
    if not isinstance(relay_to, bool):
        raise ValueError("relay_to must be a boolean")
    return {
        "relay_to": relay_to,
        "relay_from": list(_cidr_list(given.get("relay_from", []), "relay_from")),
        "log_oob": _disposition(given.get("log_oob", False), "log_oob"),
        "log_arf": _disposition(given.get("log_arf", False), "log_arf"),
    }


def functions(context: Context) -> HostFunctions:
    warned: set[str] = set()

    def warn_once(text: str) -> None:
        if text not in warned:
            warned.add(text)
            context.warn(text)

    def log_once(text: str) -> None:  # at run time: the daemon's log, once per text
        if text not in warned:
            warned.add(text)
            log.warning("policy warning", extra={"policy": context.policy, "text": text})

    def start(given: Any) -> tuple[bool | None, str | None]:
        try:
            context.listeners.append(listener(to_python(given), warn_once))
        except ValueError as e:
            return None, str(e)
        return True, None

    def make_domain(given: Any) -> tuple[Any, str | None]:
        try:
            return context.to_lua(domain(to_python(given))), None
        except ValueError as e:
            return None, str(e)

    def relay_host(via: str, peer: str) -> bool:
        """Whether the peer is in relay_hosts of the listener it came in by: the
        listener on that port, else the first, else KumoMTA's default."""
        chosen = for_port(context.listeners, parse(via).port, lambda one: one["port"])
        cidrs = chosen["relay_hosts"] if chosen else DEFAULT_RELAY_HOSTS
        return covers(cidrs, peer)

    def relay_from(cidrs: Any, peer: str) -> bool:
        return covers(tuple(to_python(cidrs) or ()), peer)

    def dynamic_parameters(given: Any, local: str) -> tuple[Any, str | None]:
        try:
            checked = dynamic(to_python(given), parse(local).host, log_once)
        except ValueError as e:
            return None, f"smtp_server_get_dynamic_parameters: {e}"
        return context.to_lua(checked), None

    return {
        "start": start,
        "domain": make_domain,
        "relay_host": relay_host,
        "relay_from": relay_from,
        "dynamic_parameters": dynamic_parameters,
        "enforced": lambda: bool(context.listeners),
    }
