"""msg:add_authentication_results: the Authentication-Results field (RFC 8601)
as KumoMTA lays it out, built by the host so no value can start a field."""

from __future__ import annotations

import pytest

from policyd.mailauth.results import header_value
from tests.smtpclient import send_message

DKIM = {
    "method": "dkim",
    "result": "pass",
    "props": {"header.d": "github.com", "header.i": "@github.com", "header.s": "pf2023"},
}


def test_each_result_and_property_has_its_own_folded_line() -> None:
    spf = {"method": "spf", "result": "fail", "reason": 'matched "-all"', "props": {}}
    assert header_value("mx.example.com", [DKIM, spf]) == (
        "mx.example.com;\r\n\tdkim=pass\r\n\theader.d=github.com\r\n\theader.i=@github.com"
        '\r\n\theader.s=pf2023;\r\n\tspf=fail reason="matched \\"-all\\""'
    )
    assert header_value("mx.example.com", {}) == "mx.example.com; none"
    versioned = {"method": "auth", "method_version": 1, "result": "pass"}
    assert header_value("mx", [versioned]) == "mx;\r\n\tauth/1=pass"


@pytest.mark.parametrize(
    ("results", "error"),
    [
        ([{"method": "spf", "result": "pass", "reason": "a\r\nX-Evil: 1"}], "control characters"),
        ([{"method": "spf x", "result": "pass"}], r"results\[1\]\.method must be a keyword"),
        ([{"method": "spf", "result": "pass", "props": {"bad": "x"}}], "ptype.property"),
        ([{"method": "spf", "result": "pass", "extra": 1}], "unknown field 'extra'"),
        ("spf=pass", "results must be a list"),
    ],
)
def test_what_is_not_a_result_is_refused(results: object, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        header_value("mx", results)


def test_the_field_is_prepended_to_the_stored_message(stack_factory) -> None:
    stack = stack_factory(r"""
kumo.on('smtp_server_message_received', function(msg)
  msg:add_authentication_results(msg:get_meta('hostname'), {
    { method = 'spf', result = 'pass', props = { ['smtp.mailfrom'] = msg:sender().email } },
  })
end)
""")
    assert send_message(stack.port, b"Subject: x\r\n\r\nbody\r\n").startswith(b"250 OK ids=")
    (entry,) = stack.stored_entries()
    assert entry.message == (
        b"Authentication-Results: mx.test;\r\n\tspf=pass\r\n\tsmtp.mailfrom=a@example.com\r\n"
        b"Subject: x\r\n\r\nbody\r\n"
    )
