"""init/pre_init, kumo.start_esmtp_listener, get_listener_domain and
KumoMTA's relaying rule, in the real engine."""

from __future__ import annotations

import pytest

from policy.v1 import policy_pb2 as pb
from policyd.runtime import LuaPolicy
from policyd.source import PolicyError, PolicySource
from tests.test_engine import Engine


@pytest.fixture
def load(write_policy):
    def make(text: str) -> Engine:
        return Engine(LuaPolicy(PolicySource.at(write_policy(text))))

    return make


def rcpt(recipient: str, sender: str = "a@sender.example", peer: str = "192.0.2.7",
         port: int = 25) -> pb.EvaluateRequest:  # fmt: skip
    return pb.EvaluateRequest(
        event="smtp_server_rcpt_to",
        client=pb.Client(edge_id="edge-1", hostname="mx.test"),
        session=pb.Session(
            id="s", peer_ip=peer, peer_port=4000, local_ip="10.0.0.1", local_port=port
        ),
        rcpt_to=pb.RcptToArgs(recipient=recipient, sender=sender),
    )


GUIDE = """
kumo.on('init', function()
  kumo.start_esmtp_listener {
    listen = '0.0.0.0:25',
    hostname = 'mx.example.com',
    banner = 'Welcome',
    relay_hosts = { '127.0.0.1', '10.1.0.0/16' },
    max_message_size = 1000000,
    max_recipients_per_message = 50,
    max_messages_per_connection = 20,
    batch_handling = 'BatchByDomain',
    trace_headers = { received_header = true },
  }
end)
kumo.on('get_listener_domain', function(domain, listener, conn_meta)
  if domain == 'inbound.example' then
    return kumo.make_listener_domain { relay_to = true }
  end
  if domain == 'customer.example' then
    return kumo.make_listener_domain { relay_from = { '198.51.100.0/24' } }
  end
  if domain == 'seen.example' then
    kumo.reject(550, 'listener ' .. listener)
  end
end)
"""


def test_a_listed_relay_host_may_relay_anywhere(load) -> None:
    engine = load(GUIDE)
    assert engine.evaluate(rcpt("x@else.example", peer="10.1.2.3")).action == pb.ACTION_CONTINUE


def test_an_unlisted_peer_may_not_relay(load) -> None:
    verdict = load(GUIDE).evaluate(rcpt("x@else.example"))
    assert (verdict.action, verdict.code) == (pb.ACTION_REJECT, 550)
    assert verdict.text == "5.7.1 relaying not permitted for 192.0.2.7:4000"


def test_ipv6_peer_is_named_as_kumomta_names_it(load) -> None:
    verdict = load(GUIDE).evaluate(rcpt("x@else.example", peer="2001:db8::1"))
    assert verdict.text == "5.7.1 relaying not permitted for [2001:db8::1]:4000"


def test_relay_to_domains_are_accepted_from_anyone(load) -> None:
    assert load(GUIDE).evaluate(rcpt("x@inbound.example")).action == pb.ACTION_CONTINUE


def test_relay_from_covers_the_senders_domain_from_its_network(load) -> None:
    engine = load(GUIDE)
    ok = rcpt("x@else.example", sender="a@customer.example", peer="198.51.100.9")
    assert engine.evaluate(ok).action == pb.ACTION_CONTINUE
    other = rcpt("x@else.example", sender="a@customer.example", peer="192.0.2.7")
    assert engine.evaluate(other).code == 550


def test_get_listener_domain_is_told_the_listener_address(load) -> None:
    verdict = load(GUIDE).evaluate(rcpt("x@seen.example"))
    assert verdict.text == "listener 10.0.0.1:25"


def test_the_screen_runs_before_the_policys_own_rcpt_handler(load) -> None:
    engine = load(
        GUIDE
        + "kumo.on('smtp_server_rcpt_to', function(r) kumo.reject(451, 'own ' .. r.domain) end)"
    )
    assert engine.evaluate(rcpt("x@else.example")).code == 550
    assert engine.evaluate(rcpt("x@inbound.example")).text == "own inbound.example"


def test_rcpt_is_asked_when_relaying_is_checked(load) -> None:
    assert "smtp_server_rcpt_to" in load(GUIDE).policy.handled_events
    plain = load("kumo.on('smtp_server_mail_from', function() end)")
    assert plain.policy.handled_events == ("smtp_server_mail_from",)


def test_default_relay_hosts_are_loopback_only(load) -> None:
    engine = load(
        "kumo.on('init', function() kumo.start_esmtp_listener { listen = '[::]:25' } end)"
    )
    assert engine.evaluate(rcpt("x@y.example", peer="127.0.0.1")).action == pb.ACTION_CONTINUE
    assert engine.evaluate(rcpt("x@y.example", peer="::1")).action == pb.ACTION_CONTINUE
    assert engine.evaluate(rcpt("x@y.example", peer="192.0.2.1")).code == 550


def test_get_listener_domain_alone_turns_the_check_on(load) -> None:
    engine = load("kumo.on('get_listener_domain', function() return nil end)")
    assert engine.evaluate(rcpt("x@y.example")).code == 550


def test_listeners_reach_the_contract(load) -> None:
    from policyd.extensions.listener import as_contract

    policy = load(GUIDE).policy
    (listener,) = [as_contract(p) for p in policy.listeners]
    assert listener == pb.Listener(
        listen="0.0.0.0:25", hostname="mx.example.com", banner="Welcome",
        max_message_size=1000000, max_recipients_per_message=50,
        max_messages_per_connection=20, batch_handling=pb.BATCH_HANDLING_BATCH_BY_DOMAIN,
        received_header=True,
    )  # fmt: skip


def test_pre_init_handlers_run_in_order_before_init(load) -> None:
    engine = load(
        """
local order = {}
kumo.on('pre_init', function() order[#order + 1] = 'a' end)
kumo.on('pre_init', function() order[#order + 1] = 'b' end)
kumo.on('init', function() order[#order + 1] = 'init' end)
kumo.on('smtp_server_mail_from', function() kumo.reject(550, table.concat(order, ',')) end)
"""
    )
    from tests.test_engine import mail

    assert engine.evaluate(mail()).text == "a,b,init"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("kumo.on('init', function() kumo.on('smtp_server_ehlo', print) end)",
         "kumo.on cannot be called from the init or pre_init event"),
        ("kumo.on('init', function() error('boom') end)", "boom"),
        ("kumo.on('init', function() end)\nkumo.on('init', function() end)",
         "'init' already has a handler"),
        ("kumo.on('init', function() kumo.start_esmtp_listener { colour = 1 } end)",
         "kumo.start_esmtp_listener: unknown parameter colour"),
        ("kumo.on('init', function()\n"
         "  kumo.start_esmtp_listener { relay_hosts = { '10.0.0.1/8' } }\nend)",
         "'10.0.0.1/8' is not an IP address or CIDR block"),
        ("kumo.on('init', function() kumo.start_esmtp_listener { batch_handling = 'Some' } end)",
         "batch_handling must be BifurcateAlways or BatchByDomain"),
        ("kumo.on('init', function() kumo.start_esmtp_listener { listen = 'nowhere' } end)",
         "listen must be 'ip:port'"),
        ("local d = kumo.make_listener_domain { relay_to = 'yes' }", "relay_to must be a boolean"),
        ("local d = kumo.make_listener_domain { relay_tp = true }", "unknown parameter relay_tp"),
    ],
)  # fmt: skip
def test_init_failures_fail_the_load_with_file_and_line(write_policy, text, error) -> None:
    with pytest.raises(PolicyError) as raised:
        LuaPolicy(PolicySource.at(write_policy(text)))
    assert error in str(raised.value)
    assert "policy.lua:" in str(raised.value)


def test_ignored_listener_parameters_warn_once(write_policy) -> None:
    policy = LuaPolicy(
        PolicySource.at(
            write_policy(
                "kumo.on('init', function()\n"
                "  for _, p in ipairs { 25, 587 } do\n"
                "    kumo.start_esmtp_listener { listen = '0:' .. p, tls_certificate = 'c.pem' }\n"
                "  end\n"
                "end)"
            )
        )
    )
    tls = [w for w in policy.warnings if "tls_certificate" in w]
    assert len(tls) == 1 and "accepted and ignored" in tls[0]
    assert [p["port"] for p in policy.listeners] == [25, 587]
