"""kumo.dns against a real DNS server started by the test on a loopback port."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from policy.v1 import policy_pb2 as pb
from policy.v1 import policy_pb2_grpc as pb_grpc
from tests.harness import Captured, Servers
from tests.procs import Proc
from tests.smtpclient import RawClient

V6 = "2001:db8::99"
V6_NIBBLES = "9.9.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
ZONE = {
    "negative_ttl": 2,
    "99.2.0.192.rbl.test": {"A": ["127.0.0.2"], "TXT": [["listed: see http://rbl.test/q"]]},
    f"{V6_NIBBLES}.rbl.test": {"A": ["127.0.0.4"]},
    "txt.test": {"TXT": [["v=spf1 -all"], ["hello ", "world"]]},
    "mx.test": {"MX": ["20 mx3.mx.test.", "10 mx1.mx.test.", "20 mx2.mx.test."]},
    "nomx.test": {"A": ["192.0.2.7"]},
    "host.test": {"A": ["192.0.2.5", "192.0.2.6"], "AAAA": ["2001:db8::5"]},
    "99.2.0.192.in-addr.arpa": {"PTR": ["mail.client.test."]},
    f"{V6_NIBBLES}.ip6.arpa": {"PTR": ["v6.client.test."]},
    "cache.test": {"A": ["192.0.2.8"], "ttl": 2},
    "servfail.test": {"rcode": "SERVFAIL"},
    "slow.test": {"A": ["192.0.2.9"], "delay": 1.6},
    "1.0.0.127.rbl.test": {"A": ["127.0.0.2"], "TXT": [["test listing"]]},
    "1.0.0.127.in-addr.arpa": {"PTR": ["localhost.test."]},
    "localhost.test": {"A": ["127.0.0.1"]},
}

# The op and its arguments come in conn_meta (x_op, x_args); the verdict's text
# shows what the lookup returned, or the error pcall caught.
POLICY = r"""
local function show(v)
  if type(v) ~= 'table' then return tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  if #v == #keys then  -- an array: its values, sorted (DNS records come in any order)
    for _, x in ipairs(v) do parts[#parts + 1] = show(x) end
    table.sort(parts)
    return '{' .. table.concat(parts, ',') .. '}'
  end
  for _, k in ipairs(keys) do
    parts[#parts + 1] = tostring(k) .. '=' .. show(v[k])
  end
  return '{' .. table.concat(parts, ',') .. '}'
end

kumo.on('smtp_server_mail_from', function(sender, meta)
  local op, args = meta:get_meta('x_op'), meta:get_meta('x_args')
  if op == nil or op == 'none' then return end
  local results = table.pack(pcall(kumo.dns[op], table.unpack(args)))
  if not results[1] then kumo.reject(451, 'error: ' .. results[2]) end
  local shown = {}
  for i = 2, results.n do shown[#shown + 1] = show(results[i]) end
  kumo.reject(550, table.concat(shown, ' | '))
end)

kumo.on('smtp_server_rcpt_to', function(recipient, meta)
  kumo.dns.lookup_addr(recipient.domain)  -- not caught
end)
"""


class DnsServer:
    def __init__(self, workdir: Path, zone: dict) -> None:
        zone_file = workdir / "zone.json"
        zone_file.write_text(json.dumps(zone))
        self.proc = Proc(
            [sys.executable, "-m", "tests.dns_server", str(zone_file)], workdir / "dns.log"
        )
        port = self.proc.wait_for_log(lambda e: e.get("msg") == "listening")["port"]
        self.address = f"127.0.0.1:{port}"

    def queries(self, name: str, rdtype: str) -> int:
        entries = self.proc.log_lines()
        return sum(1 for e in entries if e.get("name") == name and e.get("type") == rdtype)


@pytest.fixture
def dns_server(tmp_path) -> Iterator[DnsServer]:
    server = DnsServer(tmp_path, ZONE)
    yield server
    server.proc.stop()


@pytest.fixture
def daemon(tmp_path, dns_server, servers: Servers) -> tuple[Captured, str]:
    policy = tmp_path / "policy.lua"
    policy.write_text(POLICY)
    return servers.daemon(
        policy, tmp_path, "--dns-server", dns_server.address, "--eval-timeout", "2"
    )


class Client:
    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = pb_grpc.PolicyServiceStub(self.channel)

    def lookup(self, op: str, *args: str) -> pb.Verdict:
        meta = {"x_op": json.dumps(op), "x_args": json.dumps(list(args))}
        return self.stub.Evaluate(
            pb.EvaluateRequest(
                event="smtp_server_mail_from",
                client=pb.Client(edge_id="test", hostname="mx.test"),
                session=pb.Session(id="dns", peer_ip="192.0.2.1", peer_port=1),
                conn_meta=meta,
                mail_from=pb.MailFromArgs(sender="a@example.com"),
            ),
            timeout=10,
        )

    def shown(self, op: str, *args: str) -> str:
        verdict = self.lookup(op, *args)
        return verdict.text if verdict.code == 550 else f"{verdict.code} {verdict.text}"


@pytest.fixture
def client(daemon) -> Iterator[Client]:
    client = Client(daemon[1])
    yield client
    client.channel.close()


def test_rbl_lookups(client) -> None:
    listed = "127.0.0.2 | listed: see http://rbl.test/q"
    assert client.shown("rbl_lookup", "192.0.2.99", "rbl.test") == listed
    assert client.shown("rbl_lookup", "192.0.2.99:4567", "rbl.test") == listed
    assert client.shown("rbl_lookup", "192.0.2.100", "rbl.test") == "nil | nil"
    assert client.shown("rbl_lookup", V6, "rbl.test") == "127.0.0.4 | nil"
    assert client.shown("rbl_lookup", f"[{V6}]:25", "rbl.test") == "127.0.0.4 | nil"
    assert client.shown("rbl_lookup", "2001:db8::100", "rbl.test") == "nil | nil"
    # An IPv4 client on a dual-stack listener: looked up as the IPv4 address it is.
    assert client.shown("rbl_lookup", "[::ffff:192.0.2.99]:25", "rbl.test") == listed
    assert client.shown("lookup_ptr", "::ffff:192.0.2.99") == "{mail.client.test.}"
    assert client.shown("rbl_lookup", "not-an-ip", "rbl.test").startswith(
        "451 error: kumo.dns.rbl_lookup('not-an-ip', 'rbl.test'): not an IP address"
    )


def test_txt_mx_ptr_and_addr_lookups(client) -> None:
    assert client.shown("lookup_txt", "txt.test") == "{hello world,v=spf1 -all}"
    assert client.shown("lookup_mx", "mx.test") == (
        "{by_pref={10={mx1.mx.test.},20={mx2.mx.test.,mx3.mx.test.}},domain_name=mx.test,"
        "hosts={mx1.mx.test.,mx2.mx.test.,mx3.mx.test.},is_domain_literal=false,"
        "is_mx=true,is_secure=false,site_name=mx1.mx.test.,mx2.mx.test.,mx3.mx.test.}"
    )
    # No MX records: the domain itself is the implicit MX (RFC 5321 5.1).
    assert client.shown("lookup_mx", "nomx.test") == (
        "{by_pref={0={nomx.test}},domain_name=nomx.test,hosts={nomx.test},"
        "is_domain_literal=false,is_mx=false,is_secure=false,site_name=nomx.test}"
    )
    assert client.shown("lookup_ptr", "192.0.2.99") == "{mail.client.test.}"
    assert client.shown("lookup_ptr", V6) == "{v6.client.test.}"
    assert client.shown("lookup_addr", "host.test") == "{192.0.2.5,192.0.2.6,2001:db8::5}"
    assert client.shown("lookup_addr", "HOST.test.") == "{192.0.2.5,192.0.2.6,2001:db8::5}"
    assert client.shown("reverse_ip", "192.0.2.99") == "99.2.0.192"
    assert client.shown("ptr_host", f"[{V6}]:25") == f"{V6_NIBBLES}.ip6.arpa"


def test_nxdomain_for_each_helper(client) -> None:
    def error(op: str, name: str) -> str:
        return f"451 error: kumo.dns.{op}('{name}'): NXDOMAIN"

    assert client.shown("lookup_addr", "missing.test") == error("lookup_addr", "missing.test")
    assert client.shown("lookup_mx", "missing.test") == error("lookup_mx", "missing.test")
    assert client.shown("lookup_txt", "missing.test") == error("lookup_txt", "missing.test")
    assert client.shown("lookup_ptr", "192.0.2.200") == "{}"  # no reverse name
    assert client.shown("rbl_lookup", "192.0.2.200", "rbl.test") == "nil | nil"  # not listed
    # A failing server is an error too, and the policy can catch it.
    assert client.shown("lookup_txt", "servfail.test") == (
        "451 error: kumo.dns.lookup_txt('servfail.test'): SERVFAIL"
    )


def test_answers_and_nxdomains_are_cached_for_their_ttl(client, dns_server) -> None:
    for _ in range(3):
        assert client.shown("lookup_addr", "cache.test") == "{192.0.2.8}"
        assert client.shown("lookup_addr", "nx.test").endswith("NXDOMAIN")
    assert dns_server.queries("cache.test", "A") == 1
    assert dns_server.queries("nx.test", "A") == 1
    time.sleep(2.2)  # both TTLs (the A record's, and the SOA minimum for NXDOMAIN) run out
    assert client.shown("lookup_addr", "cache.test") == "{192.0.2.8}"
    assert client.shown("lookup_addr", "nx.test").endswith("NXDOMAIN")
    assert dns_server.queries("cache.test", "A") == 2
    assert dns_server.queries("nx.test", "A") == 2


def test_a_server_that_never_answers(tmp_path, servers) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))  # receives queries, answers none
    policy = tmp_path / "policy.lua"
    policy.write_text(POLICY)
    _, address = servers.daemon(
        policy, tmp_path, "--dns-server", f"127.0.0.1:{silent.getsockname()[1]}",
        "--eval-timeout", "1", "--dns-timeout", "5",
    )  # fmt: skip
    client = Client(address)
    finished: list[tuple[str, str]] = []

    def lookup(n: int) -> None:
        verdict = client.lookup("lookup_addr", f"slow{n}.test")
        finished.append(("dns", f"{verdict.code} {verdict.text}"))

    try:
        waiting = [threading.Thread(target=lookup, args=(n,)) for n in range(4)]
        for thread in waiting:
            thread.start()
        while not silent.recv(512):  # the daemon is waiting for DNS now
            pass
        for _ in range(5):
            verdict = client.lookup("none")
            finished.append(("other", str(verdict.action)))
        for thread in waiting:
            thread.join(10)
    finally:
        client.channel.close()
        silent.close()
    kinds = [kind for kind, _ in finished]
    assert kinds == ["other"] * 5 + ["dns"] * 4  # the others never waited for DNS
    assert {text for kind, text in finished if kind == "other"} == {str(pb.ACTION_CONTINUE)}
    for _, text in finished[5:]:
        # Given up within the evaluation's deadline, as an error the policy caught.
        assert text.startswith("451 error: kumo.dns.lookup_addr('slow")
        assert text.endswith("timed out")


def test_an_uncaught_dns_failure_is_technical_difficulties(
    tmp_path, servers, dns_server, daemon
) -> None:
    _, port = servers.edge(daemon[1], tmp_path)
    with RawClient(port) as smtp:
        smtp.reply()
        smtp.command(b"EHLO client.test")
        assert smtp.command(b"MAIL FROM:<a@example.com>").startswith(b"250")
        assert smtp.command(b"RCPT TO:<b@servfail.test>") == (
            b"421 4.3.0 mx.test technical difficulties\r\n"
        )
        assert smtp.rest_until_close() == b""
    errors = [e for e in daemon[0].log_lines() if "SERVFAIL" in str(e.get("error", ""))]
    line = POLICY.splitlines().index("  kumo.dns.lookup_addr(recipient.domain)  -- not caught") + 1
    assert errors and errors[0]["error"].startswith(
        f"policy.lua:{line}: kumo.dns.lookup_addr('servfail.test'): SERVFAIL"
    )


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "rbl.lua"


@pytest.mark.parametrize("zone", ["rbl.test", "clean.test"])
def test_the_example_dns_policy_through_the_edge(tmp_path, servers, dns_server, zone) -> None:
    """examples/rbl.lua, pointed at the test's list: 127.0.0.1 is listed on
    rbl.test, not on clean.test (and its reverse name is confirmed)."""
    text = EXAMPLE.read_text()
    assert "local RBL_ZONES = { 'zen.spamhaus.org' }" in text
    policy = tmp_path / "rbl.lua"
    policy.write_text(text.replace("'zen.spamhaus.org' }", f"'{zone}' }}"))
    _, address = servers.daemon(
        policy, tmp_path, "--dns-server", dns_server.address, "--eval-timeout", "1"
    )
    _, port = servers.edge(address, tmp_path, "--policy-timeout", "2")
    with RawClient(port) as smtp:
        if zone == "rbl.test":
            assert smtp.rest_until_close() == (
                b"554 5.7.1 Service unavailable; client [127.0.0.1] blocked using rbl.test;"
                b" test listing\r\n"
            )
        else:
            assert smtp.reply().startswith(b"220 ")
            smtp.command(b"EHLO client.test")
            assert smtp.command(b"MAIL FROM:<a@mx.test>") == b"250 OK\r\n"
            assert smtp.command(b"RSET") == b"250 OK\r\n"
            assert smtp.command(b"MAIL FROM:<a@missing.test>") == (
                b"550 5.1.8 <a@missing.test>: Sender address rejected: Domain not found\r\n"
            )
    assert dns_server.queries(f"1.0.0.127.{zone}", "A") == 1
    if zone == "clean.test":  # the reverse name was looked up and confirmed
        assert dns_server.queries("1.0.0.127.in-addr.arpa", "PTR") == 1
        assert dns_server.queries("localhost.test", "A") == 1


def test_a_lookup_shared_by_evaluations_serves_each_within_its_own_deadline(
    tmp_path, servers, dns_server
) -> None:
    """Two evaluations ask for the same slow name 0.8 s apart (the answer takes
    1.6 s; each may wait 1.2 s of its 1.5 s): one query; the first gives up, the
    second gets the answer."""
    policy = tmp_path / "policy.lua"
    policy.write_text(POLICY)
    _, address = servers.daemon(
        policy, tmp_path, "--dns-server", dns_server.address,
        "--eval-timeout", "1.5", "--dns-timeout", "3",
    )  # fmt: skip
    client = Client(address)
    results: dict[str, str] = {}

    def ask(who: str) -> None:
        results[who] = client.shown("lookup_addr", "slow.test")

    try:
        first = threading.Thread(target=ask, args=("first",))
        first.start()
        while dns_server.queries("slow.test", "A") == 0:
            time.sleep(0.01)
        time.sleep(0.8)
        ask("second")
        first.join(10)
    finally:
        client.channel.close()
    assert results["first"] == "451 error: kumo.dns.lookup_addr('slow.test'): timed out"
    assert results["second"] == "{192.0.2.9}"
    assert dns_server.queries("slow.test", "A") == 1


def test_no_cache_when_its_size_is_zero(tmp_path, servers, dns_server) -> None:
    policy = tmp_path / "policy.lua"
    policy.write_text(POLICY)
    _, address = servers.daemon(
        policy, tmp_path, "--dns-server", dns_server.address, "--dns-cache-size", "0"
    )
    client = Client(address)
    try:
        for _ in range(2):
            assert client.shown("lookup_txt", "txt.test") == "{hello world,v=spf1 -all}"
    finally:
        client.channel.close()
    assert dns_server.queries("txt.test", "TXT") == 2


def test_malformed_dns_answers_in_a_test_file_fail_the_reload_not_the_daemon(
    tmp_path, dns_server, daemon
) -> None:
    _, address = daemon
    tests = tmp_path / "policy.tests.toml"
    for table, error in (
        ('"mx.example" = { MX = ["10"] }', "dns 'mx.example': MX values are 'PREFERENCE EXCHANGE'"),
        ('"a..b" = { A = ["192.0.2.1"] }', "dns 'a..b': not a DNS name"),
        ('"x.example" = { A = ["not-an-ip"] }', "dns 'x.example':"),
    ):
        tests.write_text(f"[dns]\n{table}\n")
        reload = subprocess.run(
            [sys.executable, "-m", "policyd.ctl", "reload", "--server", address],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert reload.returncode == 1, reload.stdout
        assert error in reload.stdout + reload.stderr
    tests.unlink()
    assert Client(address).shown("lookup_txt", "txt.test") == "{hello world,v=spf1 -all}"
