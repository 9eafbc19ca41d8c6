"""kumo.dmarc.check_msg: DMARC (RFC 7489) from the SPF and DKIM results a
policy already has: is either identity aligned with the From domain, and if
not, what does the domain's policy say?

Policy discovery at `_dmarc.FROM`, then at the organisational domain from the
Public Suffix List (the `publicsuffixlist` package, which ships the list:
nothing is fetched at run time); `adkim`/`aspf` strict or relaxed, `p`, `sp`
for a subdomain that has no record of its own, `pct` applying the next
weaker policy to the messages sampled out (RFC 7489 section 6.6.4). The
disposition is KumoMTA's word (Pass, None, Quarantine, Reject, TempError,
PermError); the result RFC 8601's. Reporting is not done.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from publicsuffixlist import PublicSuffixList

from policyd.dns.records import DnsError, query_name
from policyd.mailauth.spf import Resolver

POLICIES = ("none", "quarantine", "reject")
WEAKER = {"reject": "quarantine", "quarantine": "none", "none": "none"}


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


def organisational(domain: str) -> str:
    """The organisational domain (RFC 7489 section 3.2): one label below the
    public suffix; the name itself when it is a public suffix or unknown."""
    domain = domain.lower().rstrip(".")
    return _psl().privatesuffix(domain) or domain


def aligned(identity: str, from_domain: str, strict: bool) -> bool:
    identity, from_domain = identity.lower().rstrip("."), from_domain.lower().rstrip(".")
    if strict:
        return identity == from_domain
    return organisational(identity) == organisational(from_domain)


@dataclass(frozen=True)
class DmarcResult:
    disposition: str  # KumoMTA's: Pass, None, Quarantine, Reject, TempError, PermError
    result: str  # RFC 8601's: pass, fail, none, temperror, permerror
    reason: str
    props: dict[str, str]


class _Fetch(Exception):
    """The policy record could not be looked up (a temperror)."""


def _record_tags(text: str) -> dict[str, str]:
    tags = {}
    for part in text.split(";"):
        name, eq, value = part.strip().partition("=")
        if eq:
            tags[name.strip().lower()] = value.strip()
    return tags


async def _record(dns: Resolver, domain: str) -> dict[str, str] | None:
    name = f"_dmarc.{domain}"
    try:
        records = await dns.records(query_name(name), "TXT")
    except DnsError as e:
        raise _Fetch(f"DNS records could not be resolved for {name}: {e}") from None
    found = [str(v) for v in records.values if re.match(r"v\s*=\s*DMARC1\s*(;|$)", str(v))]
    if len(found) != 1:
        return None  # none, or several: as none (RFC 7489 section 6.6.3)
    return _record_tags(found[0])


def _identities(dkim: list[Mapping[str, Any]], spf: Mapping[str, Any]) -> tuple[list[str], str]:
    passed = [
        str(r.get("props", {}).get("header.d", "")) for r in dkim if r.get("result") == "pass"
    ]
    mail_from = ""
    if spf.get("result") == "pass":
        mail_from = str(spf.get("props", {}).get("smtp.mailfrom", "")).rpartition("@")[2]
    return [d for d in passed if d], mail_from


async def check(
    dns: Resolver,
    from_domain: str,
    dkim: list[Mapping[str, Any]],
    spf: Mapping[str, Any],
    sample: float | None = None,
) -> DmarcResult:
    """The DMARC result for a message From `from_domain`, given its DKIM and
    SPF results (KumoMTA's AuthenticationResult tables). `sample` (0 to 1,
    random by default) decides pct."""
    from_domain = from_domain.lower().rstrip(".")
    props = {"header.from": from_domain}
    try:
        record, own = await _record(dns, from_domain), True
        org = organisational(from_domain)
        if record is None and org != from_domain:
            record, own = await _record(dns, org), False
    except _Fetch as failed:
        return DmarcResult("TempError", "temperror", str(failed), props)
    if record is None:
        return DmarcResult("None", "none", f"no DMARC records found for {from_domain}", props)
    policy = record.get("p", "").lower()
    if policy not in POLICIES:
        return DmarcResult("PermError", "permerror", f"invalid p= in the record: {policy!r}", props)
    if not own and record.get("sp", "").lower() in POLICIES:
        policy = record["sp"].lower()
    dkim_domains, mail_from = _identities(dkim, spf)
    strict_dkim, strict_spf = record.get("adkim") == "s", record.get("aspf") == "s"
    if any(aligned(d, from_domain, strict_dkim) for d in dkim_domains):
        return DmarcResult("Pass", "pass", "DKIM aligned with the From domain", props)
    if mail_from and aligned(mail_from, from_domain, strict_spf):
        return DmarcResult("Pass", "pass", "SPF aligned with the From domain", props)
    try:
        pct = min(100, max(0, int(record.get("pct", "100"))))
    except ValueError:
        pct = 100
    reason = "neither DKIM nor SPF aligned with the From domain"
    if (random.random() if sample is None else sample) * 100 >= pct:
        policy, reason = WEAKER[policy], f"{reason}; sampled out by pct={pct}"
    props["policy.published-domain-policy"] = policy
    return DmarcResult(policy.capitalize(), "fail", reason, props)
