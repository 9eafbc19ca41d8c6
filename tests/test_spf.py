"""SPF (RFC 7208) on the daemon's resolver: each disposition, include and
redirect, macros, exp=, and the RFC's limits, against zones served by the
policy test runner's static DNS source."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from policyd.dns.lookups import Dns
from policyd.dns.sources import StaticSource
from policyd.mailauth.spf import SpfResult, check_host

ZONE: dict[str, dict[str, Any]] = {
    "example.com": {
        "TXT": ["v=spf1 ip4:192.0.2.0/24 a:mail.example.com mx include:partner.example ~all"],
        "MX": ["10 mx.example.com"],
    },
    "mail.example.com": {"A": ["198.51.100.7"]},
    "mx.example.com": {"A": ["198.51.100.25"], "AAAA": ["2001:db8::25"]},
    "partner.example": {"TXT": ["v=spf1 ip6:2001:db8:1::/48 -all"]},
    "strict.example": {"TXT": ["v=spf1 -all exp=explain.strict.example"]},
    "explain.strict.example": {"TXT": ["%{i} is not one of %{d}'s senders (%{l})"]},
    "neutral.example": {"TXT": ["v=spf1 ?all"]},
    "nomatch.example": {"TXT": ["v=spf1 ip4:203.0.113.1"]},
    "redirected.example": {"TXT": ["v=spf1 redirect=example.com"]},
    "macro.example": {"TXT": ["v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all"]},
    "2.100.51.198.user._spf.macro.example": {"A": ["127.0.0.2"]},
    "broken.example": {"TXT": ["v=spf1 ip4:192.0.2.1 bogus:x -all"]},
    "two.example": {"TXT": ["v=spf1 -all", "v=spf1 +all"]},
    "loop.example": {"TXT": ["v=spf1 include:loop.example -all"]},
    "voids.example": {"TXT": ["v=spf1 a:n1.example a:n2.example a:n3.example -all"]},
    "down.example": {"fail": "SERVFAIL"},
    "temp.example": {"TXT": ["v=spf1 include:down.example -all"]},
    "ptr.example": {"TXT": ["v=spf1 ptr -all"]},
    "198.51.100.9": {"PTR": ["host.ptr.example."]},
    "host.ptr.example": {"A": ["198.51.100.9"]},
    "other.example": {"TXT": ["not spf", "v=spf10 +all"]},
}


def check(ip: str, domain: str, sender: str = "", helo: str = "client.test") -> SpfResult:
    dns = Dns(StaticSource(ZONE))
    return asyncio.run(check_host(dns, ip, domain, sender or f"user@{domain}", helo, "mx.test"))


@pytest.mark.parametrize(
    ("ip", "domain", "disposition", "context"),
    [
        ("192.0.2.10", "example.com", "pass", "matched 'ip4:192.0.2.0/24' directive"),
        ("198.51.100.7", "example.com", "pass", "matched 'a:mail.example.com' directive"),
        ("198.51.100.25", "example.com", "pass", "matched 'mx' directive"),
        ("2001:db8::25", "example.com", "pass", "matched 'mx' directive"),
        ("::ffff:192.0.2.10", "example.com", "pass", "matched 'ip4:192.0.2.0/24' directive"),
        ("2001:db8:1::5", "example.com", "pass", "matched 'include:partner.example' directive"),
        ("203.0.113.5", "example.com", "softfail", "matched '~all' directive"),
        ("203.0.113.5", "neutral.example", "neutral", "matched '?all' directive"),
        ("203.0.113.5", "nomatch.example", "neutral", "no directive of nomatch.example matched"),
        ("203.0.113.5", "unknown.example", "none", "no SPF records found for unknown.example"),
        ("203.0.113.5", "other.example", "none", "no SPF records found for other.example"),
        ("192.0.2.10", "redirected.example", "pass", "matched 'ip4:192.0.2.0/24' directive"),
        ("198.51.100.9", "ptr.example", "pass", "matched 'ptr' directive"),
        ("198.51.100.10", "ptr.example", "fail", "matched '-all' directive"),
    ],
)
def test_dispositions(ip: str, domain: str, disposition: str, context: str) -> None:
    assert check(ip, domain) == SpfResult(disposition, context)


def test_macros_expand_as_the_rfc_writes_them() -> None:
    # %{ir}: the IP reversed; %{l1r+-}: the local part split on + and -, reversed, first one
    assert check("198.51.100.2", "macro.example", "user-tag@macro.example").disposition == "pass"
    assert check("198.51.100.3", "macro.example", "user-tag@macro.example").disposition == "fail"


def test_a_fail_carries_the_domain_s_explanation() -> None:
    assert check("203.0.113.5", "strict.example", "bob@strict.example") == SpfResult(
        "fail", "203.0.113.5 is not one of strict.example's senders (bob)"
    )


@pytest.mark.parametrize(
    ("domain", "disposition", "context"),
    [
        ("broken.example", "permerror", "broken.example: invalid term 'bogus:x'"),
        ("two.example", "permerror", "two.example has more than one SPF record"),
        ("loop.example", "permerror", "more than 10 DNS-querying terms"),
        ("voids.example", "permerror", "more than 2 void DNS lookups"),
        ("down.example", "temperror", "DNS lookup of down.example TXT failed: SERVFAIL"),
        ("temp.example", "temperror", "DNS lookup of down.example TXT failed: SERVFAIL"),
    ],
)
def test_errors(domain: str, disposition: str, context: str) -> None:
    assert check("203.0.113.5", domain) == SpfResult(disposition, context)


def test_the_null_sender_checks_the_helo_identity() -> None:
    dns = Dns(StaticSource(ZONE))
    result = asyncio.run(check_host(dns, "192.0.2.10", "example.com", "", "example.com"))
    assert result.disposition == "pass"
