"""MAIL FROM / RCPT TO paths, against RFC 5321 section 4.1.2 (and RFC 6531's
UTF-8), as a literal table: what each path argument yields.

The edge used to take aiosmtpd's parser, which reads paths with the email
package's RFC 5322 header parser. It keeps what real mail needs of that
parser's leniency, and deliberately differs where RFC 5322 is not SMTP:
- kept: dots anywhere in a local part (`a..b@`, `.a@`, `a.@`: handed out by
  some mobile carriers), UTF-8 without SMTPUTF8, paths without angle brackets,
  source routes (accepted and ignored, as RFC 5321 section 4.1.2 says),
  quoted local parts (kept quoted), address literals, underscores in domains;
- refused (553), where aiosmtpd accepted: comments (`<(x)a@b>`), spaces inside
  the brackets (`< a@b >`, `<a b@c>`, which it rewrote to `"a b"@c`), a
  missing `>`, no space between the path and its parameters (`<a@b>junk`), a
  local part without a domain (but `<Postmaster>` as a recipient, RFC 5321
  section 4.5.1), labels that begin or end with a hyphen, the null path `<>`
  as a recipient, backslashes outside quotes;
- refused (553), where aiosmtpd failed with an internal error: an unclosed
  address literal (`<a@[192.0.2.1>`); invalid IPv4 and IPv6 literals.
"""

from __future__ import annotations

import pytest

from smtpedge.commands import MALFORMED, Refused, parse_path

BAD = MALFORMED

# (path argument, what it yields as MAIL FROM's, and as RCPT TO's): (address,
# the text after the path) or BAD; SAME: as a recipient as well as as a sender.
SAME = "as for MAIL FROM"
TABLE: list[tuple[str, object, object]] = [
    # RFC 5321 Mailbox = Local-part "@" ( Domain / address-literal )
    ("<a@example.com>", ("a@example.com", ""), SAME),
    ("<first.last@sub.example.com>", ("first.last@sub.example.com", ""), SAME),
    ("<A.B-C_D@EXAMPLE.COM>", ("A.B-C_D@EXAMPLE.COM", ""), SAME),
    ("<a+tag@example.com>", ("a+tag@example.com", ""), SAME),
    ("<o'brien@example.com>", ("o'brien@example.com", ""), SAME),
    ("<!#$%&'*+/=?^_`{|}~-@example.com>", ("!#$%&'*+/=?^_`{|}~-@example.com", ""), SAME),
    ("<a@b>", ("a@b", ""), SAME),
    ("<a@a-b.example>", ("a@a-b.example", ""), SAME),
    ("<a@xn--bcher-kva.example>", ("a@xn--bcher-kva.example", ""), SAME),
    ("<a@1.2.3.4>", ("a@1.2.3.4", ""), SAME),  # a domain of digits
    # Parameters after the path (split off here; checked by mail_from / rcpt_to)
    ("<a@example.com> SIZE=1000 BODY=8BITMIME", ("a@example.com", "SIZE=1000 BODY=8BITMIME"), SAME),
    ("<a@example.com>\tSIZE=10", ("a@example.com", "SIZE=10"), SAME),
    ("<a@example.com>   SIZE=1  BODY=7BIT", ("a@example.com", "SIZE=1  BODY=7BIT"), SAME),
    ("<a@example.com>junk", BAD, SAME),
    # Reverse-path = Path / "<>"
    ("<>", ("", ""), BAD),
    ("<> SIZE=10", ("", "SIZE=10"), BAD),
    ("<>junk", BAD, SAME),
    # Quoted-string local parts, kept as written
    ('<"quoted local"@example.com>', ('"quoted local"@example.com', ""), SAME),
    ('<"a\\"b"@c.example>', ('"a\\"b"@c.example', ""), SAME),
    ('<""@c.example>', ('""@c.example', ""), SAME),
    ('<"unclosed@c.example>', BAD, SAME),
    # Source routes: accepted and ignored
    ("<@relay.example:a@example.com>", ("a@example.com", ""), SAME),
    ("<@one.example,@two.example:a@example.com>", ("a@example.com", ""), SAME),
    ("<@one.example,two.example:a@example.com>", BAD, SAME),
    ("<@:a@example.com>", BAD, SAME),
    # Address literals (RFC 5321 section 4.1.3)
    ("<a@[192.0.2.1]>", ("a@[192.0.2.1]", ""), SAME),
    ("<a@[IPv6:2001:db8::1]>", ("a@[IPv6:2001:db8::1]", ""), SAME),
    ("<a@[tag:general-content]>", ("a@[tag:general-content]", ""), SAME),
    ("<a@[192.0.2.300]>", BAD, SAME),
    ("<a@[IPv6:zz::1]>", BAD, SAME),
    ("<a@[example]>", BAD, SAME),
    ("<a@[192.0.2.1>", BAD, SAME),
    # UTF-8 (RFC 6531), accepted with or without SMTPUTF8 as aiosmtpd did
    ("<jürgen@bücher.example>", ("jürgen@bücher.example", ""), SAME),
    ("<日本@例え.テスト>", ("日本@例え.テスト", ""), SAME),
    # Leniencies real mail needs
    ("<a..b@example.com>", ("a..b@example.com", ""), SAME),
    ("<.a@example.com>", (".a@example.com", ""), SAME),
    ("<a.@example.com>", ("a.@example.com", ""), SAME),
    ("<a@b_c.example>", ("a@b_c.example", ""), SAME),
    ("a@example.com", ("a@example.com", ""), SAME),
    ("a@example.com SIZE=1", ("a@example.com", "SIZE=1"), SAME),
    # Postmaster without a domain: a recipient only (RFC 5321 section 4.5.1)
    ("<Postmaster>", BAD, ("Postmaster", "")),
    ("<postmaster>", BAD, ("postmaster", "")),
    ("<someone>", BAD, SAME),
    # Not SMTP paths
    ("<a@example.com", BAD, SAME),
    ("a@example.com>", BAD, SAME),
    ("<<a@example.com>>", BAD, SAME),
    ("<a b@example.com>", BAD, SAME),
    ("< a@example.com >", BAD, SAME),
    ("<(comment)a@example.com>", BAD, SAME),
    ("<a@example.com(comment)>", BAD, SAME),
    ("<a\\b@example.com>", BAD, SAME),
    ("<a@b@example.com>", BAD, SAME),
    ("<@example.com>", BAD, SAME),
    ("<a@>", BAD, SAME),
    ("<.@example.com>", BAD, SAME),
    ("<a@example..com>", BAD, SAME),
    ("<a@example.com.>", BAD, SAME),
    ("<a@.example.com>", BAD, SAME),
    ("<a@-example.com>", BAD, SAME),
    ("<a@example-.com>", BAD, SAME),
    ("<a@exa mple.com>", BAD, SAME),
    ("<a@exa,mple.com>", BAD, SAME),
    ("<<<@>>>", BAD, SAME),
    ("<@@@>", BAD, SAME),
    ("<", BAD, SAME),
]  # fmt: skip


def _parse(text: str, *, null: bool) -> object:
    try:
        return parse_path(text, null=null, postmaster=not null)
    except Refused as e:
        assert e.reply == "553 5.1.3 Error: malformed address"
        return BAD


@pytest.mark.parametrize(("text", "as_sender", "as_recipient"), TABLE, ids=[t[0] for t in TABLE])
def test_paths(text: str, as_sender: object, as_recipient: object) -> None:
    assert _parse(text, null=True) == as_sender
    assert _parse(text, null=False) == (as_sender if as_recipient is SAME else as_recipient)


def test_the_table_has_no_duplicates() -> None:
    assert len({row[0] for row in TABLE}) == len(TABLE)
