"""An upstream MTA for relay tests, run as its own process (aiosmtpd):

    python -m tests.upstream_sink --listen 127.0.0.1:0 --dir DIR [--lmtp]
        [--tls-cert F --tls-key F] [--delay SECONDS]

It stores each accepted message's bytes exactly as received (DIR/N.eml, with
the envelope in DIR/N.json), and refuses on request, so tests can see what
reaches the client:
- sender local part `refuse-sender`: 553 at MAIL;
- recipient local part `temp-fail`: 450 at RCPT, `perm-fail`: 550 at RCPT;
- a header `X-Upstream-Reply: CODE` in the message: that code at DATA
  (with LMTP, per recipient: `temp-fail-data` / `perm-fail-data` local parts).
`--delay` makes every reply late by that many seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import ssl
import sys
from pathlib import Path

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

_counter = itertools.count(1)


class Sink:
    def __init__(self, directory: Path, lmtp: bool, delay: float) -> None:
        self.directory, self.lmtp, self.delay = directory, lmtp, delay

    async def handle_MAIL(self, server, session, envelope: Envelope, address, options):
        await asyncio.sleep(self.delay)
        if address.startswith("refuse-sender@"):
            return "553 5.7.1 sender refused by upstream"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 upstream ok"

    async def handle_RCPT(self, server, session, envelope: Envelope, address, options):
        await asyncio.sleep(self.delay)
        local = address.split("@")[0]
        if local == "temp-fail":
            return "450 4.2.0 <" + address + ">: mailbox busy upstream"
        if local == "perm-fail":
            return "550-5.1.1 <" + address + ">: no such user upstream\r\n550 5.1.1 second line"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 upstream ok"

    async def handle_DATA(self, server, session: Session, envelope: Envelope):
        await asyncio.sleep(self.delay)
        data = envelope.original_content or b""
        wanted = re.search(rb"^X-Upstream-Reply: (\d{3})", data, re.M)
        if self.lmtp:
            replies = []
            for rcpt in envelope.rcpt_tos:
                local = rcpt.split("@")[0]
                if local == "temp-fail-data":
                    replies.append(f"452 4.2.2 <{rcpt}> over quota upstream")
                elif local == "perm-fail-data":
                    replies.append(f"552 5.2.2 <{rcpt}> over quota for good upstream")
                else:
                    self.store(envelope, data, [rcpt])
                    replies.append(f"250 2.0.0 <{rcpt}> delivered upstream")
            return "\r\n".join(replies)
        if wanted:
            code = wanted.group(1).decode()
            return f"{code} {code[0]}.0.0 upstream refuses this message"
        number = self.store(envelope, data, envelope.rcpt_tos, session)
        return f"250 2.0.0 Ok: queued upstream as {number}"

    def store(
        self, envelope: Envelope, data: bytes, recipients: list[str], session: Session | None = None
    ) -> int:
        number = next(_counter)
        (self.directory / f"{number}.eml").write_bytes(data)
        facts = {
            "sender": envelope.mail_from,
            "recipients": recipients,
            "tls": bool(session and session.ssl),
        }
        (self.directory / f"{number}.json").write_text(json.dumps(facts))
        return number


async def main(args: argparse.Namespace) -> None:
    args.dir.mkdir(parents=True, exist_ok=True)
    handler = Sink(args.dir, args.lmtp, args.delay)
    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    loop = asyncio.get_running_loop()
    protocol = LMTP if args.lmtp else SMTP
    host, _, port = args.listen.rpartition(":")

    def connection() -> SMTP:
        print(json.dumps({"msg": "connection"}), file=sys.stderr, flush=True)
        return protocol(handler, hostname="upstream.test", tls_context=tls, loop=loop)

    server = await loop.create_server(connection, host, int(port))
    bound = server.sockets[0].getsockname()
    print(json.dumps({"msg": "listening", "address": f"{host}:{bound[1]}"}), file=sys.stderr,
          flush=True)  # fmt: skip
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--lmtp", action="store_true")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--delay", type=float, default=0.0)
    asyncio.run(main(parser.parse_args()))
