"""policyctl: check and test policies offline; evaluate, inspect and reload a live daemon.

    policyctl check PATH              load as the daemon would (tests included)
    policyctl test PATH               run the policy's test cases, with line coverage
    policyctl eval --server A EVENT   send one event to a running daemon
    policyctl status --server A       the active revision, the last failure
    policyctl reload --server A       load, validate and activate the files on disk

Exit status: 0 fine; 1 a check, test or call failed; 2 the policy does not load.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click
import grpc
from google.protobuf.json_format import MessageToDict

from policy.v1 import policy_pb2 as pb
from policy.v1 import policy_pb2_grpc as pb_grpc
from policyd.evaluate import EVENT_ARGS
from policyd.runtime import LuaPolicy
from policyd.source import PolicyError, PolicySource
from policyd.store import Engine, prepare
from policyd.testing import load_cases, run_case

SHORT_EVENTS = {name.removeprefix("smtp_server_"): name for name in EVENT_ARGS}
SERVER = click.option(
    "--server",
    default="127.0.0.1:50051",
    envvar="POLICYCTL_SERVER",
    show_envvar=True,
    show_default=True,
    help="The daemon's gRPC address.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """policyctl: check and test policies, and talk to a running policyd."""


@main.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def check(path: Path) -> None:
    """Load a policy as the daemon would (its test cases included) and report it."""
    try:
        revision, warnings = prepare(PolicySource.at(path), "check", Engine())
    except PolicyError as e:
        click.echo(f"FAIL {path}: {e}", err=True)
        sys.exit(2)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"ok {path}: revision {revision.id}")
    click.echo(f"  files: {', '.join(revision.files)}")
    click.echo(f"  handlers: {', '.join(revision.handlers) or '(none: every command is accepted)'}")
    click.echo(f"  test cases passed: {revision.test_cases}")


@main.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--coverage/--no-coverage", default=True, help="Report the handler lines run.")
def test(path: Path, coverage: bool) -> None:
    """Run the policy's test cases offline (fake clock, throttles in memory)."""
    try:
        source = PolicySource.at(path)
        policy = LuaPolicy(source, coverage=coverage)
        cases = load_cases(source)
    except PolicyError as e:
        click.echo(f"FAIL {path}: {e}", err=True)
        sys.exit(2)
    if not cases:
        click.echo(f"no test cases for {path} (see `policyctl test --help`)", err=True)
        sys.exit(1)
    failed = asyncio.run(_run(policy, cases))
    click.echo(f"\n{len(cases) - failed} passed, {failed} failed")
    if coverage:
        click.echo("\ncoverage of handler lines:")
        for handler in policy.coverage():
            missed = ", ".join(map(str, handler.missed)) or "none"
            click.echo(
                f"  {handler.source}:{handler.first}-{handler.last} {handler.event}: "
                f"{len(handler.run)}/{len(handler.lines)} lines run; not run: {missed}"
            )
    sys.exit(1 if failed else 0)


async def _run(policy: LuaPolicy, cases: list) -> int:
    failed = 0
    for case in cases:
        failure = await run_case(policy, case)
        if failure is None:
            click.echo(f"PASS {case.where} {case.name}")
            continue
        failed += 1
        click.echo(f"FAIL {case.where} {case.name}")
        click.echo(f"  {failure.step_text}")
        click.echo(click.style(f"  - expected: {failure.expected}", fg="green"))
        click.echo(click.style(f"  + got:      {failure.got}", fg="red"))
    return failed


def _call(server: str, method: str, request: Any) -> Any:
    with grpc.insecure_channel(server) as channel:
        stub = (
            pb_grpc.PolicyServiceStub(channel)
            if method == "Evaluate"
            else pb_grpc.PolicyAdminStub(channel)
        )
        try:
            return getattr(stub, method)(request, timeout=30)
        except grpc.RpcError as e:
            click.echo(f"{method} failed: {e.code().name}: {e.details()}", err=True)
            sys.exit(1)


def _print(message: Any) -> None:
    click.echo(json.dumps(MessageToDict(message, preserving_proto_field_name=True), indent=2))


@main.command(name="eval")
@SERVER
@click.argument("event", type=click.Choice(sorted([*SHORT_EVENTS, *EVENT_ARGS])))
@click.option("--peer", default="192.0.2.1:40000", show_default=True, help="Client IP:PORT.")
@click.option("--ehlo", "ehlo_domain", help="The EHLO domain (the argument for the ehlo event).")
@click.option("--helo", is_flag=True, help="The greeting was HELO.")
@click.option("--sender", default="", help="MAIL FROM address (mail_from and data events).")
@click.option("--recipient", "recipients", multiple=True, help="RCPT TO address; repeatable.")
@click.option("--message", type=click.File("rb"), help="The message (data events).")
@click.option("--meta", multiple=True, help="conn_meta KEY=JSON set earlier; repeatable.")
@click.option("--edge-id", default="policyctl", show_default=True)
@click.option("--hostname", default="mx.example.test", show_default=True)
@click.option("--dry-run", is_flag=True, help="Ask for a dry run.")
def evaluate(server: str, event: str, **facts: Any) -> None:
    """Send one EVENT (e.g. mail_from) to a running daemon and print the verdict."""
    name = SHORT_EVENTS.get(event, event)
    ip, _, port = facts["peer"].rpartition(":")
    request = pb.EvaluateRequest(
        event=name,
        dry_run=facts["dry_run"],
        client=pb.Client(edge_id=facts["edge_id"], hostname=facts["hostname"]),
        session=pb.Session(
            id="policyctl",
            peer_ip=ip.strip("[]"),
            peer_port=int(port or 0),
            ehlo_domain=facts["ehlo_domain"] or "",
        ),
        conn_meta=dict(item.split("=", 1) for item in facts["meta"]),
    )
    kind = EVENT_ARGS[name]
    recipients = list(facts["recipients"])
    if kind == "connect":
        request.connect.SetInParent()
    elif kind == "ehlo":
        request.ehlo.CopyFrom(pb.EhloArgs(domain=facts["ehlo_domain"] or "", helo=facts["helo"]))
    elif kind == "mail_from":
        request.mail_from.sender = facts["sender"]
    elif kind == "rcpt_to":
        request.rcpt_to.recipient = recipients[0] if recipients else ""
    elif kind == "message":
        data = facts["message"].read() if facts["message"] else b""
        request.message.CopyFrom(
            pb.MessageArgs(
                message_id="policyctl", sender=facts["sender"], recipients=recipients, data=data
            )
        )
    _print(_call(server, "Evaluate", request))


@main.command()
@SERVER
def status(server: str) -> None:
    """Print the daemon's active revision, its last failed reload and its counters."""
    _print(_call(server, "Status", pb.StatusRequest()))


@main.command()
@SERVER
def reload(server: str) -> None:
    """Have the daemon load, validate and activate the policy files on disk."""
    response = _call(server, "Reload", pb.ReloadRequest())
    _print(response)
    sys.exit(1 if response.outcome == pb.ReloadResponse.OUTCOME_FAILED else 0)


if __name__ == "__main__":
    main()
