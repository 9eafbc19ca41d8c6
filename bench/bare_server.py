"""The ceiling: a bare aiosmtpd server delivering the way the edge does, with no policy.

python -m bench.bare_server --listen 127.0.0.1:0 --maildir DIR [--loop uvloop]
python -m bench.bare_server --listen 127.0.0.1:0 --relay smtp://HOST:PORT [--loop uvloop]

With --maildir it stores each message durably (the edge's Maildir code, in a
thread as the edge does). With --relay it relays each transaction as it happens
through the edge's own upstream client and pool (smtpedge.relay.Relay) with the
edge's default timeout and pool size, MAIL and RCPT going upstream when the
client sends them and the message at DATA, as the edge's RelayDelivery does:
the only difference left between this server and the edge is the policy path.
An upstream error ends in aiosmtpd's 500 reply, which the load generators
report; nothing here retries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

from policy.addresses import parse
from policy.ids import new_message_id
from smtpedge.config import EdgeConfig, RelayTarget
from smtpedge.maildir import Maildir
from smtpedge.relay import Relay, Upstream, UpstreamReply

HOSTNAME = "bare.test"


class Store:
    def __init__(self, maildir: Maildir) -> None:
        self.maildir = maildir

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message_id = new_message_id()
        loop = asyncio.get_running_loop()
        stored = [(envelope.original_content or b"", message_id)]
        await loop.run_in_executor(None, self.maildir.deliver, stored)
        return f"250 OK ids={message_id}"


def _passed_back(reply: UpstreamReply) -> str:
    return "\r\n".join(reply.reply_lines())


class Forward:
    """Each session's transaction mirrored upstream, one pooled connection per transaction."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self._open: dict[Session, Upstream] = {}

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        upstream, _ = await self.relay.acquire()
        reply = await upstream.command(f"MAIL FROM:<{address}>")
        if not reply.ok:
            await self.relay.release(upstream, clean=True)
            return _passed_back(reply)
        self._open[session] = upstream
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = await self._open[session].command(f"RCPT TO:<{address}>")
        if not reply.ok:
            return _passed_back(reply)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        upstream = self._open.pop(session)
        replies = await upstream.data(envelope.original_content or b"", len(envelope.rcpt_tos))
        await self.relay.release(upstream, clean=True)
        if not replies[-1].ok:
            return _passed_back(replies[-1])
        return f"250 OK ids={new_message_id()}"


def handler(maildir: Path | None, relay: str | None) -> Store | Forward:
    if relay is None:
        assert maildir is not None
        return Store(Maildir(maildir))
    edge = EdgeConfig()  # the edge's defaults for the relay's timeout and pool
    return Forward(Relay(RelayTarget.parse(relay), HOSTNAME, edge.relay_timeout, edge.relay_pool))


async def serve(listen: str, handler: Store | Forward) -> None:
    address = parse(listen)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname=HOSTNAME, ident="ESMTP bare", loop=loop),
        address.host,
        address.port,
        backlog=1024,
    )
    bound = server.sockets[0].getsockname()
    print(
        json.dumps({"msg": "listening", "address": str(address.with_port(bound[1]))}),
        file=sys.stderr,
        flush=True,
    )
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--maildir", type=Path)
    where.add_argument("--relay", metavar="smtp://HOST:PORT")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    main_coroutine = serve(args.listen, handler(args.maildir, args.relay))
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main_coroutine)
    else:
        asyncio.run(main_coroutine)


if __name__ == "__main__":
    main()
