"""The edge's fast path for SMTP addresses returns exactly what aiosmtpd's parser does."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from aiosmtpd.smtp import SMTP

from smtpedge.protocol import EdgeSMTP

ARGS = [
    "<a@example.com>",
    "<first.last@sub.example.com>",
    "<a@example.com> SIZE=1000 BODY=8BITMIME",
    "<a@example.com>\tSIZE=10",
    "<a@example.com> ",
    "<a@example.com>   SIZE=1  BODY=7BIT ",
    "<A.B-C_D@EXAMPLE.COM>",
    "  <a+tag@example.com>",
    "<o'brien@example.com>",
    "<a@b>",
    "<>",
    "<> SIZE=10",
    "a@example.com",
    '<"quoted local"@example.com>',
    "<@relay.example:a@example.com>",
    "<a..b@example.com>",
    "<.a@example.com>",
    "<a.@example.com>",
    "<a@-example.com>",
    "<a@example..com>",
    "<a@[192.0.2.1]>",
    "<jürgen@bücher.example>",
    "<a@example.com>junk",
    "<a@example.com",
    "<<a@example.com>>",
    "<a b@example.com>",
    "",
]


@pytest.mark.parametrize("arg", ARGS)
def test_fast_address_parsing_matches_aiosmtpd(arg: str) -> None:
    this = SimpleNamespace(local_part_limit=0)
    expected = SMTP._getaddr(this, arg)  # type: ignore[arg-type]
    assert EdgeSMTP._getaddr(this, arg) == expected  # type: ignore[arg-type]
