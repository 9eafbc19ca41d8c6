"""A policy's own test cases: scripted SMTP conversations and the verdicts
they must get. Every revision passes them before it is activated (store.py),
and `policyctl test` reports them with line coverage.

A test file is TOML. Each `[[case]]` is one SMTP session; its `steps` run in
order through the same evaluator the daemon serves with, carrying conn_meta
from step to step as an edge would:

    [[case]]
    name = "a blocked sender is refused and the session goes on"
    peer = "192.0.2.1:40000"          # optional; also: local, hostname, edge_id, meta
    steps = [
      { ehlo = "client.example" },
      { mail_from = "x@spam.example", expect = "reject 550 5.7.1 not from you" },
      { mail_from = "alice@example.com", meta = { x_sender = "alice@example.com" } },
      { rcpt_to = "bob@example.com" },
      { data = "Subject: hi\\r\\n\\r\\nbody\\r\\n" },
    ]

A step has one event key: `connect = true`, `ehlo`, `helo`, `auth_plain` (a
table: `{ authc = "alice", password = "secret" }`, optionally `authz`),
`mail_from`, `rcpt_to`, `data` (the message; runs the data phase as the edge
does: smtp_server_data, smtp_server_split_transaction, then
smtp_server_message_received once per batch, stopping at a refusal), or
`wait = SECONDS` (time passes on the case's fake clock: throttles and kumo.sleep
run on it; each case starts at the same instant with empty throttles). Any
event's value may also be a table of its argument fields.
DNS answers for kumo.dns come from the test, never the network: a `[dns]`
table for every case of the file and a `dns` table per case (merged over it),
by name, then record type:

    [dns]
    "2.0.0.192.bl.example" = { A = ["127.0.0.2"], TXT = ["listed: spam source"] }
    "192.0.2.1" = { PTR = ["mail.example.net."] }     # an IP stands for its PTR name
    "example.net" = { MX = ["10 mx.example.net."], A = ["192.0.2.10"] }
    "broken.example" = { fail = "SERVFAIL" }          # every lookup of it fails

A name not listed is NXDOMAIN; a type not listed for a name is no data.
`expect` is "continue" (the default), "error", or "reject|disconnect CODE
[TEXT]" (TEXT, when given, must match exactly); `mode` optionally names the
disconnect mode; `meta` lists conn_meta values the session must hold after the
step.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from typing import Any

from policy.addresses import parse
from policy.auth import granted
from policy.events import AUTH_PLAIN, EHLO, MAIL_FROM, RCPT_TO, Event, Stage, of_stage
from policy.listeners import for_port
from policy.reception import NO_MESSAGE, receive
from policy.v1 import policy_pb2 as pb
from policy.verdicts import ACTION_NAMES, ACTIONS, MODE_NAMES
from policyd.bridge import Bridge
from policyd.dns.lookups import Dns
from policyd.dns.sources import StaticSource
from policyd.evaluate import Evaluator
from policyd.extensions.listener import as_contract
from policyd.runtime import LuaPolicy
from policyd.source import PolicyError, PolicySource
from policyd.throttle import Throttles

# A step's one event key: the short name of the first event of a stage (the step
# runs every event of the stage: data runs smtp_server_data, then
# smtp_server_message_received), helo (the EHLO event, as HELO), or wait.
STEP_EVENTS: dict[str, Event] = {
    events[0].short: events[0] for events in (of_stage(stage) for stage in Stage) if events
}
EVENT_KEYS = (*STEP_EVENTS, "helo", "wait")
STEP_KEYS = {*EVENT_KEYS, "expect", "mode", "meta"}
CASE_KEYS = {"name", "peer", "local", "hostname", "edge_id", "meta", "dns", "steps"}


@dataclass(frozen=True)
class Expectation:
    action: str = "continue"
    code: int | None = None
    text: str | None = None
    mode: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, step: dict[str, Any]) -> Expectation:
        words = str(step.get("expect", "continue")).split(" ", 2)
        action = words[0]
        if action not in ACTIONS:
            raise ValueError(
                f"expect must start with continue, error, reject or disconnect: {action!r}"
            )
        code = None
        if len(words) > 1:
            if not words[1].isdigit():
                raise ValueError(f"expect {action!r} takes a numeric code, got {words[1]!r}")
            code = int(words[1])
        return cls(
            action,
            code,
            words[2] if len(words) > 2 else None,
            step.get("mode"),
            step.get("meta", {}),
        )

    def describe(self) -> str:
        parts = [self.action, *(str(p) for p in (self.code, self.text) if p is not None)]
        return " ".join(parts) + (f" ({self.mode})" if self.mode else "")


@dataclass(frozen=True)
class Step:
    event: str
    value: Any
    expect: Expectation


@dataclass(frozen=True)
class Case:
    file: str
    line: int
    name: str
    steps: tuple[Step, ...]
    peer: str = "192.0.2.1:40000"
    local: str = "192.0.2.25:25"
    hostname: str = "mx.example.test"
    edge_id: str = "test-edge"
    labels: dict[str, str] = field(default_factory=dict)
    dns: dict[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Failure:
    case: Case
    step: int  # 1-based
    expected: str
    got: str

    @property
    def step_text(self) -> str:
        step = self.case.steps[self.step - 1]
        return f"step {self.step} ({step.event} {step.value if step.event != 'data' else '…'})"

    def __str__(self) -> str:
        return (
            f"{self.case.where}: case '{self.case.name}', {self.step_text}: "
            f"expected {self.expected}, got {self.got}"
        )


def _line_of(text: str, name: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        if name in line and "name" in line:
            return number
    return 1


def parse_cases(file: str, text: str) -> list[Case]:
    """Parses one test file; PolicyError (naming the file) if it is malformed."""
    try:
        doc = tomllib.loads(text)
        shared_dns = doc.get("dns", {})
        StaticSource(shared_dns)  # checks the answers, even with no case using them
        cases: list[Case] = []
        for raw in doc.get("case", []):
            unknown = set(raw) - CASE_KEYS
            if unknown:
                raise ValueError(f"case has unknown keys {sorted(unknown)}")
            name = raw.get("name") or f"case {len(cases) + 1}"
            steps = []
            for raw_step in raw.get("steps", []):
                unknown = set(raw_step) - STEP_KEYS
                events = [k for k in EVENT_KEYS if k in raw_step]
                if unknown or len(events) != 1:
                    raise ValueError(
                        f"case '{name}': a step needs exactly one of {', '.join(EVENT_KEYS)}"
                        + (f" (unknown keys {sorted(unknown)})" if unknown else "")
                    )
                steps.append(Step(events[0], raw_step[events[0]], Expectation.parse(raw_step)))
            options = {k: raw[k] for k in ("peer", "local", "hostname", "edge_id") if k in raw}
            for key in ("peer", "local"):
                if key in options:
                    parse(options[key])  # checked here, so a bad address names the file
            dns = {**shared_dns, **raw.get("dns", {})}
            StaticSource(dns)  # checks the answers
            cases.append(
                Case(
                    file,
                    _line_of(text, name),
                    name,
                    tuple(steps),
                    labels=raw.get("meta", {}),
                    dns=dns,
                    **options,
                )
            )
        return cases
    except (tomllib.TOMLDecodeError, ValueError, TypeError) as e:
        raise PolicyError(f"{file}: {e}") from None


def load_cases(source: PolicySource) -> list[Case]:
    return [
        case
        for file in source.test_files()
        for case in parse_cases(file, source.read(file).decode("utf-8", errors="replace"))
    ]


class Conversation:
    """One case's session, as an edge would drive it, on a fake clock of its own."""

    def __init__(self, policy: LuaPolicy, case: Case) -> None:
        self.clock = FakeClock()
        bridge = Bridge(
            Throttles(clock=self.clock.time),
            sleep=self.clock.sleep,
            dns=Dns(StaticSource(case.dns)),
        )
        self.evaluator = Evaluator(policy, bridge)
        peer, local = parse(case.peer), parse(case.local)
        self.client = pb.Client(
            edge_id=case.edge_id, hostname=case.hostname, listener=case.local, labels=case.labels
        )
        self.session = pb.Session(
            id="test", peer_ip=peer.host, peer_port=peer.port, local_ip=local.host,
            local_port=local.port,
        )  # fmt: skip
        self.conn_meta: dict[str, str] = {}
        self.sender = ""
        self.recipients: list[str] = []
        listener = for_port(policy.listeners, local.port, lambda one: one["port"])
        self.handling = as_contract(listener).batch_handling if listener else 0

    async def ask(self, event: Event, arguments: Any) -> pb.Verdict:
        request = event.request(
            arguments, client=self.client, session=self.session, conn_meta=self.conn_meta
        )
        verdict = await self.evaluator.evaluate(request)
        self.conn_meta.update(verdict.meta_set)
        return verdict

    async def step(self, step: Step) -> pb.Verdict:
        """One step: its stage's events, with the session effects an edge would
        give their verdicts."""
        key, value = step.event, step.value
        if key == "wait":  # time passes: only the fake clock moves
            await self.clock.sleep(float(value))
            return pb.Verdict(action=pb.ACTION_CONTINUE)
        event = EHLO if key == "helo" else STEP_EVENTS[key]
        fields = dict(value) if isinstance(value, dict) else {}
        if event.value is not None and not isinstance(value, dict):
            fields[event.value] = value
        if key == "helo":
            fields["helo"] = True
        if event.stage is Stage.DATA:
            return await self._data(fields)
        verdict = await self.ask(event, event.arguments(**fields))
        passed = verdict.action == pb.ACTION_CONTINUE
        if event is EHLO:
            self.session.ehlo_domain = fields["domain"] if passed else ""
        elif event is AUTH_PLAIN and passed and verdict.auth_granted:
            self.session.auth.CopyFrom(
                granted(verdict, fields.get("authz", ""), fields.get("authc", ""))
            )
        elif event is MAIL_FROM and passed:
            self.sender, self.recipients = fields["sender"], []
        elif event is RCPT_TO and passed:
            self.recipients.append(fields["recipient"])
        return verdict

    async def _data(self, fields: dict[str, Any]) -> pb.Verdict:
        """The data phase as the edge runs it (policy/reception.py): the verdict
        that refused, the edge's refusal when the transaction was split into no
        message, or the last verdict when every message passed."""
        data = fields.get("data", "")
        ids = iter(range(1, 1_000_000))
        received = await receive(
            lambda event, arguments: self.ask(event, arguments),
            lambda: fields.get("message_id") or f"test-message-{next(ids)}",
            sender=fields.get("sender", self.sender),
            recipients=list(fields.get("recipients", self.recipients)),
            data=data.encode() if isinstance(data, str) else data,
            handling=self.handling,
        )
        if received.stopped is None and not received.messages:
            code, text = NO_MESSAGE
            return pb.Verdict(action=pb.ACTION_REJECT, code=code, text=text)
        return received.verdict or pb.Verdict(action=pb.ACTION_CONTINUE)


def check(
    expect: Expectation, verdict: pb.Verdict, conn_meta: dict[str, str]
) -> tuple[str, str] | None:
    """None when the verdict is as expected, else (what was expected, what came)."""
    got = ACTION_NAMES.get(verdict.action, "no verdict")
    got_desc = " ".join([got, *([str(verdict.code), verdict.text] if verdict.code else [])])
    if verdict.error:
        got_desc += f" [{verdict.error}]"
    mismatch = (
        got != expect.action
        or (expect.code is not None and verdict.code != expect.code)
        or (expect.text is not None and verdict.text != expect.text)
        or (expect.mode is not None and MODE_NAMES.get(verdict.mode) != expect.mode)
    )
    if mismatch:
        return expect.describe(), got_desc
    for key, want in expect.meta.items():
        have = json.loads(conn_meta[key]) if key in conn_meta else None
        if have != want:
            return f"conn_meta {key} = {want!r}", f"conn_meta {key} = {have!r}"
    return None


async def run_case(policy: LuaPolicy, case: Case) -> Failure | None:
    conversation = Conversation(policy, case)
    for number, step in enumerate(case.steps, 1):
        problem = check(step.expect, await conversation.step(step), conversation.conn_meta)
        if problem:
            return Failure(case, number, *problem)
    return None


async def run_cases(policy: LuaPolicy, cases: list[Case]) -> list[Failure]:
    return [f for f in [await run_case(policy, c) for c in cases] if f is not None]


class FakeClock:
    """Test time: kumo.sleep moves it on at once; throttles count by it."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
