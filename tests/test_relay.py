"""Relay mode: the transaction goes to a real upstream MTA while the client waits."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.procs import Proc, start_daemon, start_edge
from tests.smtpclient import RawClient

POLICY = r"""
kumo.on('smtp_server_rcpt_to', function(rcpt)
  if rcpt.user == 'policy-refused' then kumo.reject(550, '5.7.1 refused by policy') end
end)
kumo.on('smtp_server_data', function(msg)
  if msg:get_first_named_header_value('X-Policy-Reject') then
    kumo.reject(554, '5.7.1 refused by policy at data')
  end
end)
"""

RECEIVED = re.compile(rb"\AReceived: from client\.test \(\[127\.0\.0\.1\]\)\r\n"
                      rb"\tby mx\.test \(smtpedge\) with ESMTP id ([0-9a-f]{32});?\r\n"
                      rb"\t(?:for <[^>]+>; )?[^\r\n]+\r\n")  # fmt: skip


class Upstream:
    def __init__(self, workdir: Path, *args: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.dir = workdir / "upstream"
        self.proc = Proc(
            [sys.executable, "-m", "tests.upstream_sink", "--dir", str(self.dir), *args],
            workdir / "upstream.log",
        )
        self.port = int(self.proc.wait_listening().rsplit(":", 1)[1])

    def messages(self) -> list[tuple[bytes, dict]]:
        numbers = sorted(int(p.stem) for p in self.dir.glob("*.eml"))
        return [
            ((self.dir / f"{n}.eml").read_bytes(), json.loads((self.dir / f"{n}.json").read_text()))
            for n in numbers
        ]

    def connections(self) -> int:
        return sum(1 for e in self.proc.log_lines() if e.get("msg") == "connection")


@pytest.fixture
def relay(tmp_path):
    """Starts an upstream (with args) and a daemon + edge relaying to it."""
    procs: list[Proc] = []

    def start(*upstream_args: str, url: str = "smtp://127.0.0.1:{port}", edge_args=()):
        upstream = Upstream(tmp_path, *upstream_args)
        procs.append(upstream.proc)
        (tmp_path / "policy.lua").write_text(POLICY)
        daemon, address = start_daemon(tmp_path / "policy.lua", tmp_path)
        procs.append(daemon)
        edge, port = start_edge(
            address, tmp_path, "--relay", url.format(port=upstream.port), *edge_args
        )
        procs.append(edge)
        return upstream, port, edge

    yield start
    for proc in reversed(procs):
        proc.stop()


def transaction(port: int, sender: bytes, recipients: list[bytes], body: bytes) -> list[bytes]:
    """The replies to MAIL, each RCPT, DATA and the message (stops at a refused DATA)."""
    with RawClient(port) as client:
        client.reply()
        client.command(b"EHLO client.test")
        replies = [client.command(b"MAIL FROM:<" + sender + b">")]
        replies += [client.command(b"RCPT TO:<" + r + b">") for r in recipients]
        replies.append(client.command(b"DATA"))
        if replies[-1].startswith(b"354"):
            client.send(body.replace(b"\r\n.", b"\r\n..") + b".\r\n")
            replies.append(client.reply())
        client.command(b"QUIT")
    return replies


BODIES = [
    b"Subject: plain\r\nTo: b@example.com\r\n\r\nHello.\r\n",
    b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n",
    "Subject: utf-8 é\r\n\r\nGrüße, 日本\r\n".encode(),
    b"Subject: long\r\n\r\n" + b"x" * 998 + b"\r\n" + b"\r\n" * 3,
    b"Subject: no body\r\n\r\n",
]


def test_relayed_messages_arrive_byte_identical_apart_from_the_trace_header(relay) -> None:
    """Each message the transaction was split into (one per recipient, the
    default) is its own upstream transaction, with its own id and header."""
    upstream, port, edge = relay()
    wanted = []  # (body, message id, recipients) of every message upstream should get
    for n, body in enumerate(BODIES):
        recipients = [b"b@example.com"] if n % 2 else [b"b@example.com", b"c@example.net"]
        replies = transaction(port, b"a@example.com", recipients, body)
        assert replies[0] == b"250 OK\r\n" and replies[-2].startswith(b"354")
        assert all(r == b"250 OK\r\n" for r in replies[1:-2])
        assert replies[-1].startswith(b"250 OK ids=")
        ids = replies[-1][len(b"250 OK ids=") :].split()
        wanted += [(body, i, [r.decode()]) for i, r in zip(ids, recipients, strict=True)]
    got = upstream.messages()
    assert len(got) == len(wanted) == 8
    for (data, envelope), (body, message_id, batch) in zip(got, wanted, strict=True):
        match = RECEIVED.match(data)
        assert match, data[:300]
        assert match.group(1) == message_id
        assert f"for <{batch[0]}>".encode() in match.group()
        assert data[match.end() :] == body  # byte for byte
        assert envelope["sender"] == "a@example.com"
        assert envelope["recipients"] == batch
    relayed = [e for e in edge.log_lines() if e.get("msg") == "relayed"]
    assert [e["message_id"] for e in relayed] == [i.decode() for _, i, _ in wanted]


def test_batch_by_domain_relays_one_upstream_transaction_per_domain(relay) -> None:
    upstream, port, _ = relay(edge_args=("--batch-handling", "BatchByDomain"))
    recipients = [b"a@one.example", b"b@two.example", b"c@one.example"]
    replies = transaction(port, b"s@example.com", recipients, b"Subject: d\r\n\r\nbody\r\n")
    assert re.fullmatch(rb"250 OK ids=\w+ \w+\r\n", replies[-1]), replies
    got = [envelope["recipients"] for _, envelope in upstream.messages()]
    assert got == [["a@one.example", "c@one.example"], ["b@two.example"]]


def test_upstream_refusals_reach_the_client_as_worded(relay) -> None:
    upstream, port, _ = relay()
    assert transaction(port, b"refuse-sender@example.com", [], b"")[0] == (
        b"553 5.7.1 sender refused by upstream\r\n"
    )
    replies = transaction(
        port,
        b"a@example.com",
        [b"temp-fail@example.com", b"ok@example.com", b"perm-fail@example.com"],
        b"Subject: partly\r\n\r\nbody\r\n",
    )
    assert replies[1] == b"450 4.2.0 <temp-fail@example.com>: mailbox busy upstream\r\n"
    assert replies[2] == b"250 OK\r\n"
    assert replies[3] == (
        b"550-5.1.1 <perm-fail@example.com>: no such user upstream\r\n550 5.1.1 second line\r\n"
    )
    assert replies[-1].startswith(b"250 OK ids=")
    for code in (b"451", b"554"):
        body = b"X-Upstream-Reply: " + code + b"\r\nSubject: refused\r\n\r\nbody\r\n"
        replies = transaction(port, b"a@example.com", [b"b@example.com"], body)
        assert replies[-1] == code + b" " + code[:1] + b".0.0 upstream refuses this message\r\n"
    assert [env["recipients"] for _, env in upstream.messages()] == [["ok@example.com"]]


def test_policy_verdicts_come_first(relay) -> None:
    upstream, port, _ = relay()
    replies = transaction(
        port,
        b"a@example.com",
        [b"policy-refused@example.com", b"ok@example.com"],
        b"X-Policy-Reject: yes\r\n\r\nbody\r\n",
    )
    assert replies[1] == b"550 5.7.1 refused by policy\r\n"
    assert replies[-1] == b"554 5.7.1 refused by policy at data\r\n"
    replies = transaction(
        port, b"a@example.com", [b"ok@example.com"], b"Subject: fine\r\n\r\nb\r\n"
    )
    assert replies[-1].startswith(b"250 OK ids=")
    # The upstream saw only the second transaction (the first was reset there).
    assert [env["recipients"] for _, env in upstream.messages()] == [["ok@example.com"]]


UNAVAILABLE = re.compile(rb"\A451 4\.4\.1 mx\.test upstream not available, try again later\r\n\Z")


def test_an_unreachable_upstream_gives_451_and_never_250(relay) -> None:
    upstream, port, _ = relay()
    upstream.proc.stop()
    assert UNAVAILABLE.match(transaction(port, b"a@example.com", [b"b@example.com"], b"")[0])
    # Down in the middle of a transaction: DATA is not acknowledged.
    upstream2 = Upstream(upstream.dir.parent / "again", "--listen", f"127.0.0.1:{upstream.port}")
    try:
        with RawClient(port) as client:
            client.reply()
            client.command(b"EHLO client.test")
            assert client.command(b"MAIL FROM:<a@example.com>") == b"250 OK\r\n"
            assert client.command(b"RCPT TO:<b@example.com>") == b"250 OK\r\n"
            upstream2.proc.stop()
            assert client.command(b"DATA").startswith(b"354")
            client.send(b"Subject: lost\r\n\r\nbody\r\n.\r\n")
            assert UNAVAILABLE.match(client.reply())
    finally:
        upstream2.proc.stop()
    assert upstream2.messages() == []


def test_a_slow_upstream_gives_451(relay) -> None:
    _, port, _ = relay("--delay", "3", edge_args=("--relay-timeout", "0.5"))
    began = time.monotonic()
    reply = transaction(port, b"a@example.com", [b"b@example.com"], b"")[0]
    assert UNAVAILABLE.match(reply)
    assert time.monotonic() - began < 2.5


def test_upstream_connections_are_reused(relay) -> None:
    upstream, port, _ = relay()
    for n in range(6):
        replies = transaction(
            port, b"a@example.com", [b"b@example.com"], b"Subject: %d\r\n\r\n" % n
        )
        assert replies[-1].startswith(b"250 OK ids=")
    assert len(upstream.messages()) == 6
    assert upstream.connections() == 1


def test_lmtp_upstream(relay) -> None:
    upstream, port, _ = relay("--lmtp", url="lmtp://127.0.0.1:{port}")
    ok = transaction(port, b"a@example.com", [b"b@example.com", b"c@example.com"], b"S: 1\r\n\r\n")
    assert ok[-1].startswith(b"250 OK ids=")
    assert sorted(env["recipients"][0] for _, env in upstream.messages()) == [
        "b@example.com",
        "c@example.com",
    ]
    refused = transaction(
        port, b"a@example.com", [b"d@example.com", b"perm-fail-data@example.com"], b"S: 2\r\n\r\n"
    )
    assert refused[-1] == b"552 5.2.2 <perm-fail-data@example.com> over quota for good upstream\r\n"


@pytest.fixture
def certificate(tmp_path) -> tuple[Path, Path]:
    cert, key = tmp_path / "upstream.crt", tmp_path / "upstream.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=upstream.test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_starttls_to_the_upstream(relay, certificate) -> None:
    cert, key = certificate
    upstream, port, _ = relay(
        "--tls-cert", str(cert), "--tls-key", str(key),
        url="smtp://127.0.0.1:{port}?starttls=require&verify=no",
    )  # fmt: skip
    replies = transaction(port, b"a@example.com", [b"b@example.com"], b"Subject: tls\r\n\r\n")
    assert replies[-1].startswith(b"250 OK ids=")
    ((_, envelope),) = upstream.messages()
    assert envelope["tls"] is True


def test_starttls_required_but_not_offered_is_451(relay) -> None:
    upstream, port, _ = relay(url="smtp://127.0.0.1:{port}?starttls=require")
    assert UNAVAILABLE.match(transaction(port, b"a@example.com", [b"b@example.com"], b"")[0])
    assert upstream.messages() == []


def test_a_postfix_smtp_sink_upstream(tmp_path) -> None:
    """Postfix's smtp-sink, a third-party server, as the upstream."""
    import shutil
    import tempfile

    from tests.procs import free_port

    exe = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    dump = Path(tempfile.mkdtemp(prefix="smtp-sink-"))  # reachable by the user it runs as
    dump.chmod(0o777)
    sink_port = free_port()
    sink = subprocess.Popen(
        [exe, "-u", "nobody", "-d", f"{dump}/%M.", f"127.0.0.1:{sink_port}", "10"]
    )
    (tmp_path / "policy.lua").write_text(POLICY)
    daemon, address = start_daemon(tmp_path / "policy.lua", tmp_path)
    edge, port = start_edge(address, tmp_path, "--relay", f"smtp://127.0.0.1:{sink_port}")
    try:
        replies = transaction(
            port, b"a@example.com", [b"b@example.com"], b"Subject: to smtp-sink\r\n\r\nhello\r\n"
        )
        assert replies[-1].startswith(b"250 OK ids=")
        deadline = time.monotonic() + 5
        while not list(dump.iterdir()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        (dumped,) = [p.read_bytes() for p in dump.iterdir()]
        assert b"by mx.test (smtpedge) with ESMTP id " in dumped
        assert b"Subject: to smtp-sink\n\nhello\n" in dumped
    finally:
        edge.stop()
        daemon.stop()
        sink.terminate()
        sink.wait(5)
        shutil.rmtree(dump, ignore_errors=True)


class ScriptedUpstream:
    """An upstream that misbehaves as told, one way per connection, and notes
    which of its connections the edge has closed."""

    MODES = ("bad-greeting", "eof-greeting", "bad-ehlo", "bad-mail", "eof-rcpt", "bad-data")

    def __init__(self, modes: list[str]) -> None:
        self.modes = list(modes)
        self.closed: list[tuple[str, threading.Event]] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.modes:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            done = threading.Event()
            mode = self.modes.pop(0)
            self.closed.append((mode, done))
            threading.Thread(target=self._serve, args=(conn, mode, done), daemon=True).start()

    def _serve(self, conn: socket.socket, mode: str, done: threading.Event) -> None:
        conn.settimeout(20)
        lines = conn.makefile("rb")
        try:
            if mode == "bad-greeting":
                conn.sendall(b"hello there, I am no SMTP server\r\n")
            elif mode == "eof-greeting":
                conn.shutdown(socket.SHUT_WR)
            else:
                conn.sendall(b"220 upstream.test\r\n")
                self._dialogue(conn, lines, mode)
            while conn.recv(4096):  # until the edge closes its end
                pass
            done.set()
        except OSError:
            pass
        finally:
            conn.close()

    @staticmethod
    def _dialogue(conn: socket.socket, lines, mode: str) -> None:
        for line in lines:
            verb = line[:4].upper()
            if verb == b"EHLO":
                conn.sendall(b"garbage\r\n" if mode == "bad-ehlo" else b"250 upstream.test\r\n")
            elif verb == b"MAIL":
                conn.sendall(b"nonsense\r\n" if mode == "bad-mail" else b"250 ok\r\n")
            elif verb == b"RCPT":
                if mode == "eof-rcpt":
                    conn.shutdown(socket.SHUT_WR)
                else:
                    conn.sendall(b"250 ok\r\n")
            elif verb == b"DATA":
                conn.sendall(b"354 go on\r\n")
                for data in lines:
                    if data == b".\r\n":
                        break
                conn.sendall(b"this is not a reply\r\n")
            else:
                conn.sendall(b"250 ok\r\n")

    def close(self) -> None:
        self.listener.close()


def test_no_upstream_connection_is_left_open_after_an_error(tmp_path, monkeypatch) -> None:
    """Malformed replies and hang-ups at every step: each gets the client a 451,
    and the edge closes every connection it had to the upstream (it used to
    drop them open, one socket per failed transaction). Nor may closing them be
    left to the garbage collector (CPython's StreamWriter.__del__ closes a
    forgotten one, with a ResourceWarning, which the edge is made to print)."""
    monkeypatch.setenv("PYTHONWARNINGS", "always::ResourceWarning")
    modes = [mode for mode in ScriptedUpstream.MODES for _ in range(3)]
    upstream = ScriptedUpstream(modes)
    (tmp_path / "policy.lua").write_text(POLICY)
    daemon, address = start_daemon(tmp_path / "policy.lua", tmp_path)
    edge, port = start_edge(
        address, tmp_path, "--relay", f"smtp://127.0.0.1:{upstream.port}", "--relay-timeout", "5"
    )
    try:
        for _ in modes:
            replies = transaction(port, b"a@example.com", [b"b@example.com"], b"S: x\r\n\r\n")
            assert any(UNAVAILABLE.match(r) for r in replies), replies
            assert not any(r.startswith(b"250 OK ids=") for r in replies)
        deadline = time.monotonic() + 10
        while len(upstream.closed) < len(modes) or not all(e.is_set() for _, e in upstream.closed):
            if time.monotonic() > deadline:
                left_open = [mode for mode, e in upstream.closed if not e.is_set()]
                pytest.fail(f"connections the edge left open: {left_open}")
            time.sleep(0.05)
        assert sorted(mode for mode, _ in upstream.closed) == sorted(modes)
    finally:
        edge.stop()
        daemon.stop()
        upstream.close()
    assert "ResourceWarning" not in edge.log_path.read_text()


def test_a_stop_with_relayed_transactions_open_ends_cleanly(relay) -> None:
    """Sessions still in their transactions when the grace runs out are cut; the
    edge waits for them to end before it closes the upstream connections, so it
    stops with status 0, no error, and nothing half-sent is delivered upstream."""
    import signal

    upstream, port, edge = relay(edge_args=("--shutdown-grace", "0.5"))
    clients = []
    for n in range(3):
        client = RawClient(port)
        client.reply()
        client.command(b"EHLO client.test")
        assert client.command(b"MAIL FROM:<a@example.com>") == b"250 OK\r\n"
        assert client.command(b"RCPT TO:<b%d@example.com>" % n) == b"250 OK\r\n"
        if n:  # two of them in the middle of their message
            assert client.command(b"DATA").startswith(b"354 ")
            client.send(b"Subject: half\r\n")
        clients.append(client)
    edge.signal(signal.SIGTERM)
    assert edge.popen.wait(10) == 0
    log = edge.log_path.read_text()
    assert "Traceback" not in log and '"level": "ERROR"' not in log
    assert upstream.messages() == []
    for client in clients:
        client.close()
