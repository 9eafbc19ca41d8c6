"""The ceiling: a bare aiosmtpd server that stores to a Maildir the way the edge does.

python -m bench.bare_server --listen 127.0.0.1:0 --maildir DIR [--loop uvloop]
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
from policy.ids import new_id
from smtpedge.maildir import Maildir


class Store:
    def __init__(self, maildir: Maildir) -> None:
        self.maildir = maildir

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message_id = new_id()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            None, self.maildir.deliver, envelope.original_content or b"", message_id
        )
        return f"250 OK id={message_id}"


async def serve(listen: str, maildir: Path) -> None:
    address = parse(listen)
    handler = Store(Maildir(maildir))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="bare.test", ident="ESMTP bare", loop=loop),
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
    parser.add_argument("--maildir", type=Path, required=True)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(serve(args.listen, args.maildir))
    else:
        asyncio.run(serve(args.listen, args.maildir))


if __name__ == "__main__":
    main()
