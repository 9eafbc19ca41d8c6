"""KumoMTA's configuration functions: accepted and ignored with one warning
each, or honoured (set_diagnostic_log_filter)."""

from __future__ import annotations

import logging

import pytest

from policyd.extensions.log import filter_level
from policyd.runtime import LuaPolicy
from policyd.source import PolicyError, PolicySource
from tests.test_engine import Engine, mail

GUIDE_INIT = """
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '/var/spool/kumomta/data', kind = 'RocksDB' }
  kumo.define_spool { name = 'meta', path = '/var/spool/kumomta/meta', kind = 'RocksDB' }
  kumo.configure_local_logs { log_dir = '/var/log/kumomta', max_segment_duration = '1 minute' }
  kumo.start_http_listener { listen = '127.0.0.1:8000' }
  kumo.set_smtpsrv_threads(4)
  kumo.dns.configure_resolver { name_server = { '127.0.0.1:53' } }
  local pool = kumo.make_egress_pool { name = 'p', entries = {} }
  assert(type(pool) == 'table')
end)
"""


def test_outbound_configuration_is_accepted_with_one_warning_each(write_policy) -> None:
    policy = LuaPolicy(PolicySource.at(write_policy(GUIDE_INIT)))
    names = [w.split(": kumo.")[1].split(" ")[0] for w in policy.warnings]
    assert names == [
        "define_spool", "configure_local_logs", "start_http_listener", "set_smtpsrv_threads",
        "dns.configure_resolver", "make_egress_pool",
    ]  # fmt: skip
    assert policy.warnings[0].startswith("policy.lua:3: kumo.define_spool is accepted and ignored")


@pytest.mark.parametrize(
    ("text", "level"),
    [("kumod=info", None), ("lua=debug", logging.DEBUG), ("warn", logging.WARNING),
     ("kumod=debug,lua=error", logging.ERROR), ("info,lua=trace", logging.DEBUG),
     ("lua=off", logging.CRITICAL + 10)],
)  # fmt: skip
def test_log_filters_read_the_lua_target(text: str, level: int | None) -> None:
    assert filter_level(text) == level


def test_set_diagnostic_log_filter_sets_the_policy_log_level(write_policy, caplog) -> None:
    engine = Engine(
        LuaPolicy(
            PolicySource.at(
                write_policy(
                    "kumo.on('init', function()\n"
                    "  kumo.set_diagnostic_log_filter 'kumod=info,lua=warn'\n"
                    "end)\n"
                    "kumo.on('smtp_server_mail_from', function()\n"
                    "  kumo.log_info('quiet') kumo.log_warn('loud')\n"
                    "end)\n"
                )
            )
        )
    )
    with caplog.at_level(logging.DEBUG, logger="policyd.policy"):
        engine.evaluate(mail())
    texts = [getattr(r, "text", None) for r in caplog.records if r.name == "policyd.policy"]
    assert texts == ["loud"]


def test_a_bad_filter_fails_the_load(write_policy) -> None:
    with pytest.raises(PolicyError, match=r"kumo\.set_diagnostic_log_filter: 'lua=loud'"):
        LuaPolicy(PolicySource.at(write_policy("kumo.set_diagnostic_log_filter 'lua=loud'")))


@pytest.mark.parametrize(
    ("params", "node"),
    [("{ node = 'redis://r.example:6380/' }", "redis://r.example:6380/"),
     ("{ node = { 'redis://one/' }, pool_size = 4, connect_timeout = '5s' }", "redis://one/"),
     ("{ node = 'redis://r/', username = 'u', password = 'p' }", "redis://r/")],
)  # fmt: skip
def test_configure_redis_throttles_takes_redis_open_parameters(write_policy, params, node) -> None:
    text = f"kumo.on('init', function() kumo.configure_redis_throttles {params} end)"
    assert LuaPolicy(PolicySource.at(write_policy(text))).redis_node == node


@pytest.mark.parametrize(
    ("params", "error"),
    [("{ node = { 'redis://a/', 'redis://b/' } }", "Redis Cluster"),
     ("{ node = 'redis://a/', cluster = true }", "Redis Cluster"),
     ("{ nodes = 'redis://a/' }", "unknown parameter nodes"),
     ("{}", "node must be a redis:// URL"),
     ("'redis://a/'", "expected a table")],
)  # fmt: skip
def test_configure_redis_throttles_refuses_what_it_cannot_do(write_policy, params, error) -> None:
    text = f"kumo.configure_redis_throttles({params})"
    with pytest.raises(PolicyError, match=f"kumo.configure_redis_throttles: .*{error}"):
        LuaPolicy(PolicySource.at(write_policy(text)))


def test_redis_passwords_are_redacted_for_logs() -> None:
    from policyd.store import redacted

    assert redacted("redis://u:secret@r.example:6379/0") == "redis://u:***@r.example:6379/0"
    assert redacted("redis://r.example/") == "redis://r.example/"


def test_auth_plain_with_an_empty_authz_gets_authc_as_in_kumomta(write_policy) -> None:
    from policy.v1 import policy_pb2 as pb
    from tests.test_engine import request

    engine = Engine(
        LuaPolicy(
            PolicySource.at(
                write_policy(
                    "kumo.on('smtp_server_auth_plain', function(authz, authc, password)\n"
                    "  kumo.reject(535, authz .. '/' .. authc)\n"
                    "end)\n"
                )
            )
        )
    )
    for given, seen in (("", "alice/alice"), ("bob", "bob/alice")):
        args = pb.AuthPlainArgs(authz=given, authc="alice", password="pw")
        assert engine.evaluate(request("smtp_server_auth_plain", auth_plain=args)).text == seen
