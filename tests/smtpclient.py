"""A byte-level SMTP client for tests: sends exactly what it is told and
returns exactly what the server sent, so replies are checked byte for byte."""

from __future__ import annotations

import re
import socket
import time

_FINAL = re.compile(rb"^\d{3}(?: |\r\n)", re.M)


class RawClient:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise TimeoutError(f"no complete reply; have {self.buf!r}") from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return False
        self.buf += chunk
        return True

    def reply(self) -> bytes:
        """One whole reply (all lines of a multi-line reply), as bytes."""
        deadline = time.monotonic() + self.timeout
        while True:
            pos = 0
            while True:
                end = self.buf.find(b"\r\n", pos)
                if end < 0:
                    break
                line = self.buf[pos : end + 2]
                pos = end + 2
                if _FINAL.match(line):
                    out, self.buf = self.buf[:pos], self.buf[pos:]
                    return out
            if not self._fill(deadline):
                raise ConnectionError(f"closed before a complete reply; have {self.buf!r}")

    def command(self, line: bytes) -> bytes:
        self.send(line + b"\r\n")
        return self.reply()

    def rest_until_close(self) -> bytes:
        """Everything the server sends until it closes; TimeoutError if it does not."""
        deadline = time.monotonic() + self.timeout
        while self._fill(deadline):
            pass
        out, self.buf = self.buf, b""
        return out

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def send_message(
    port: int,
    body: bytes,
    sender: bytes = b"a@example.com",
    recipients: tuple[bytes, ...] = (b"b@example.net",),
    helo: bytes = b"client.test",
) -> bytes:
    """One whole transaction whose envelope is accepted (checked): the reply
    to the message. The body is sent as it is (no dot-stuffing)."""
    with RawClient(port) as client:
        assert client.reply().startswith(b"220")
        assert client.command(b"EHLO " + helo).startswith(b"250")
        assert client.command(b"MAIL FROM:<" + sender + b">") == b"250 OK\r\n"
        for recipient in recipients:
            assert client.command(b"RCPT TO:<" + recipient + b">") == b"250 OK\r\n"
        assert client.command(b"DATA").startswith(b"354")
        client.send(body + b".\r\n")
        return client.reply()
