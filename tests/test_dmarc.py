"""kumo.dmarc.check_msg (RFC 7489): alignment of SPF and DKIM with the From
domain, policy discovery through the organisational domain, p/sp/pct; unit
cases on static zones, and a whole inbound check through the real edge."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from policyd.dns.lookups import Dns
from policyd.dns.sources import StaticSource
from policyd.mailauth.dmarc import DmarcResult, check, organisational
from tests.harness import Servers
from tests.mailstore import read_maildir
from tests.smtpclient import send_message
from tests.test_dkim import MESSAGE, RSA_RECORD, sign
from tests.test_dns import DnsServer

ZONE: dict[str, dict[str, Any]] = {
    "_dmarc.example.com": {"TXT": ["v=DMARC1; p=reject; sp=quarantine; aspf=r"]},
    "_dmarc.strict.example": {"TXT": ["v=DMARC1; p=reject; adkim=s; aspf=s"]},
    "_dmarc.quarantine.example": {"TXT": ["v=DMARC1; p=quarantine; pct=50"]},
    "_dmarc.down.example": {"fail": "SERVFAIL"},
}


def dkim(domain: str, result: str = "pass") -> dict[str, Any]:
    return {"method": "dkim", "result": result, "props": {"header.d": domain}}


def spf(mail_from: str, result: str = "pass") -> dict[str, Any]:
    return {"method": "spf", "result": result, "props": {"smtp.mailfrom": mail_from}}


def dmarc(from_domain: str, dkims: list, spf_result: dict, sample: float = 0.0) -> DmarcResult:
    return asyncio.run(check(Dns(StaticSource(ZONE)), from_domain, dkims, spf_result, sample))


def test_the_organisational_domain_comes_from_the_public_suffix_list() -> None:
    assert organisational("a.b.example.co.uk") == "example.co.uk"
    assert organisational("mail.example.com") == "example.com"


@pytest.mark.parametrize(
    ("from_domain", "dkims", "spf_result", "want"),
    [
        ("example.com", [], spf("bounce@mail.example.com"), ("Pass", "pass")),  # SPF, relaxed
        ("example.com", [dkim("news.example.com")], spf("x@other.example"), ("Pass", "pass")),
        ("example.com", [dkim("example.com", "fail")], spf("x@other.example"), ("Reject", "fail")),
        ("sub.example.com", [], spf("x@other.example"), ("Quarantine", "fail")),  # sp=
        ("strict.example", [dkim("mail.strict.example")], spf("a@strict.example", "fail"),
         ("Reject", "fail")),
        ("strict.example", [dkim("strict.example")], spf("x@other.example"), ("Pass", "pass")),
        ("nothing.example", [], spf("x@nothing.example"), ("None", "none")),
        ("down.example", [], spf("x@down.example"), ("TempError", "temperror")),
    ],
)  # fmt: skip
def test_dispositions(from_domain: str, dkims: list, spf_result: dict, want: tuple) -> None:
    result = dmarc(from_domain, dkims, spf_result)
    assert (result.disposition, result.result) == want
    assert result.props["header.from"] == from_domain


def test_pct_applies_the_weaker_policy_to_the_sampled_out() -> None:
    failing: tuple[str, list, dict] = ("quarantine.example", [], spf("x@other.example"))
    assert dmarc(*failing, sample=0.1).disposition == "Quarantine"
    sampled_out = dmarc(*failing, sample=0.9)
    assert (sampled_out.disposition, sampled_out.result) == ("None", "fail")
    assert "sampled out by pct=50" in sampled_out.reason


POLICY = r"""
kumo.on('smtp_server_message_received', function(msg)
  local dkim = msg:dkim_verify()
  local spf = kumo.spf.check_msg(msg)
  local d = kumo.dmarc.check_msg(msg, dkim, nil, spf.result, false)
  local results = { spf.result, d.result }
  for _, r in ipairs(dkim) do table.insert(results, r) end
  msg:add_authentication_results(msg:get_meta('hostname'), results)
  if d.disposition == 'Reject' then
    kumo.reject(550, '5.7.1 DMARC policy of ' .. d.result.props['header.from'] .. ' says reject')
  end
end)
"""


def test_a_whole_inbound_check_through_the_edge(tmp_path, servers: Servers) -> None:
    half = len(RSA_RECORD) // 2
    dns = DnsServer(
        tmp_path,
        {
            "rsa._domainkey.example.com": {"TXT": [[RSA_RECORD[:half], RSA_RECORD[half:]]]},
            "_dmarc.example.com": {"TXT": [["v=DMARC1; p=reject"]]},
            "bounces.example.net": {"TXT": [["v=spf1 -all"]]},
        },
    )
    try:
        policy = tmp_path / "policy.lua"
        policy.write_text(POLICY)
        _, address = servers.daemon(policy, tmp_path, "--dns-server", dns.address)
        _, port = servers.edge(address, tmp_path)

        sender = b"x@bounces.example.net"
        signed = send_message(port, sign(MESSAGE, "rsa"), sender)
        assert signed.startswith(b"250 OK ids=")  # DKIM aligns
        assert send_message(port, MESSAGE, sender) == (
            b"550 5.7.1 DMARC policy of example.com says reject\r\n"
        )
        (stored,) = read_maildir(tmp_path / "mail")
        header = stored.message.split(b"\r\nFrom:", 1)[0]
        assert b"\tspf=fail" in header and b"\tdmarc=pass" in header
        assert b"\tdkim=pass" in header and b"\theader.from=example.com" in header
    finally:
        dns.proc.stop()
