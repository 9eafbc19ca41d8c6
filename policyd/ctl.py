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
from grpc_health.v1 import health_pb2, health_pb2_grpc

from policy import events
from policy.addresses import parse
from policy.options import ADDRESS_OR_UNIX, Options
from policy.v1 import POLICY_SERVICE
from policy.v1 import policy_pb2 as pb
from policy.v1 import policy_pb2_grpc as pb_grpc
from policyd import compat
from policyd.cases import Case, load_cases, run_case
from policyd.runtime import LuaPolicy
from policyd.source import PolicyError, PolicySource
from policyd.store import Engine, prepare

opt = Options("POLICYCTL").option
# An event by its short name, by KumoMTA's name, or by KumoMTA's name without
# the smtp_server_ prefix (connection_accepted).
EVENTS_BY_ANY_NAME = {
    **{event.name.removeprefix("smtp_server_"): event for event in events.EVENTS},
    **events.BY_SHORT,
    **events.BY_NAME,
}


def connection_options(command: Any) -> Any:
    """--server and how to reach it: TLS (and a client certificate), an admin token."""
    PATH = click.Path(exists=True, dir_okay=False, path_type=Path)
    for option in reversed([
        opt("--server", type=ADDRESS_OR_UNIX, default="127.0.0.1:50051", show_default=True,
            help="The daemon's gRPC address (HOST:PORT or unix:PATH)."),
        opt("--tls-ca", type=PATH, help="Use TLS; the CA that signed the daemon's certificate."),
        opt("--tls-cert", type=PATH,
            help="A client certificate (an admin one, for status and reload)."),
        opt("--tls-key", type=PATH),
        opt("--tls-server-name", help="The name to expect in the daemon's certificate."),
        opt("--token-file", type=PATH, help="The admin bearer token, for status and reload."),
    ]):  # fmt: skip
        command = option(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """policyctl: check and test policies, and talk to a running policyd."""


@main.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--strict",
    is_flag=True,
    envvar="POLICYCTL_STRICT",
    help="Exit 1 when the policy refers to KumoMTA API this service does not support "
    "or accepts and ignores.",
)
def check(path: Path, strict: bool) -> None:
    """Load a policy as the daemon would (its test cases included) and report it,
    with every KumoMTA API name it refers to that is not supported here."""
    try:
        source = PolicySource.at(path)
        revision, warnings = prepare(source, "check", Engine())
        policy = LuaPolicy(source)
    except PolicyError as e:
        click.echo(f"FAIL {path}: {e}", err=True)
        sys.exit(2)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    findings = compat.scan(policy.files, policy.provides)
    for finding in findings:
        click.echo(f"compatibility: {finding}", err=True)
    click.echo(f"ok {path}: revision {revision.id}")
    click.echo(f"  files: {', '.join(revision.files)}")
    click.echo(f"  handlers: {', '.join(revision.handlers) or '(none: every command is accepted)'}")
    click.echo(f"  test cases passed: {revision.test_cases}")
    if strict and findings:
        click.echo(f"FAIL {path}: {len(findings)} KumoMTA API references not supported (--strict)")
        sys.exit(1)


@main.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--coverage/--no-coverage", default=True, help="Report the handler lines run.")
def test(path: Path, coverage: bool) -> None:
    """Run the policy's test cases offline (fake clock, throttles in memory,
    DNS answers from the test files)."""
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


async def _run(policy: LuaPolicy, cases: list[Case]) -> int:
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


def _channel(link: dict[str, Any]) -> grpc.Channel:
    server = str(link["server"])
    if not (link["tls_ca"] or link["tls_cert"]):
        return grpc.insecure_channel(server)
    read = lambda path: path.read_bytes() if path else None  # noqa: E731
    credentials = grpc.ssl_channel_credentials(
        read(link["tls_ca"]), read(link["tls_key"]), read(link["tls_cert"])
    )
    options = []
    if link["tls_server_name"]:
        options.append(("grpc.ssl_target_name_override", link["tls_server_name"]))
    return grpc.secure_channel(server, credentials, options=options)


def _call(link: dict[str, Any], method: str, request: Any) -> Any:
    metadata = []
    if link["token_file"]:
        metadata.append(("authorization", f"Bearer {link['token_file'].read_text().strip()}"))
    with _channel(link) as channel:
        stub: Any
        if method == "Evaluate":
            stub = pb_grpc.PolicyServiceStub(channel)
        elif method == "Check":
            stub = health_pb2_grpc.HealthStub(channel)
        else:
            stub = pb_grpc.PolicyAdminStub(channel)
        try:
            return getattr(stub, method)(request, timeout=30, metadata=metadata)
        except grpc.RpcError as e:
            click.echo(f"{method} failed: {e.code().name}: {e.details()}", err=True)
            sys.exit(1)


def _print(message: Any) -> None:
    click.echo(json.dumps(MessageToDict(message, preserving_proto_field_name=True), indent=2))


@main.command(name="eval")
@connection_options
@click.argument("event", type=click.Choice(sorted(EVENTS_BY_ANY_NAME)))
@click.option("--peer", default="192.0.2.1:40000", show_default=True, help="Client IP:PORT.")
@click.option("--ehlo", "ehlo_domain", help="The EHLO domain (the argument for the ehlo event).")
@click.option("--helo", is_flag=True, help="The greeting was HELO.")
@click.option("--sender", default="", help="MAIL FROM address (mail_from and data events).")
@click.option("--recipient", "recipients", multiple=True, help="RCPT TO address; repeatable.")
@click.option("--message", type=click.File("rb"), help="The message (data events).")
@click.option("--authc", default="", help="The AUTH user name (auth_plain).")
@click.option("--password", default="", help="The AUTH password (auth_plain).")
@click.option("--meta", multiple=True, help="conn_meta KEY=JSON set earlier; repeatable.")
@click.option("--edge-id", default="policyctl", show_default=True)
@click.option("--hostname", default="mx.example.test", show_default=True)
@click.option("--dry-run", is_flag=True, help="Ask for a dry run.")
def evaluate(event: str, **facts: Any) -> None:
    """Send one EVENT (e.g. mail_from) to a running daemon and print the verdict."""
    row = EVENTS_BY_ANY_NAME[event]
    try:
        peer = parse(facts["peer"])
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--peer") from None
    recipients = list(facts["recipients"])
    # Every fact under the name of the argument field it fills; the event's
    # argument message takes those it has.
    values = {
        "domain": facts["ehlo_domain"] or "",
        "helo": facts["helo"],
        "authc": facts["authc"],
        "password": facts["password"],
        "sender": facts["sender"],
        "recipient": recipients[0] if recipients else "",
        "recipients": recipients,
        "message_id": "policyctl",
        "data": facts["message"].read() if facts["message"] else b"",
    }
    fields = events.ARGUMENT_TYPES[row.field].DESCRIPTOR.fields_by_name
    request = row.request(
        row.arguments(**{name: value for name, value in values.items() if name in fields}),
        dry_run=facts["dry_run"],
        client=pb.Client(edge_id=facts["edge_id"], hostname=facts["hostname"]),
        session=pb.Session(
            id="policyctl",
            peer_ip=peer.host,
            peer_port=peer.port,
            ehlo_domain=facts["ehlo_domain"] or "",
        ),
        conn_meta=dict(item.split("=", 1) for item in facts["meta"]),
    )
    _print(_call(facts, "Evaluate", request))


@main.command()
@connection_options
def status(**link: Any) -> None:
    """Print the daemon's active revision, its last failed reload and its counters."""
    _print(_call(link, "Status", pb.StatusRequest()))


@main.command()
@connection_options
def reload(**link: Any) -> None:
    """Have the daemon load, validate and activate the policy files on disk."""
    response = _call(link, "Reload", pb.ReloadRequest())
    _print(response)
    sys.exit(1 if response.outcome == pb.ReloadResponse.OUTCOME_FAILED else 0)


@main.command()
@connection_options
def health(**link: Any) -> None:
    """Exit 0 when the daemon reports SERVING (for container health checks)."""
    request = health_pb2.HealthCheckRequest(service=POLICY_SERVICE)
    response = _call(link, "Check", request)
    click.echo(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
    sys.exit(0 if response.status == health_pb2.HealthCheckResponse.SERVING else 1)


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--server-name",
    "server_names",
    multiple=True,
    help="Names (DNS or IP) in the server certificate; repeatable [default: localhost, 127.0.0.1].",
)
@click.option(
    "--edge",
    "edges",
    multiple=True,
    help="An edge id to make a client certificate for; repeatable [default: edge].",
)
@click.option(
    "--admin",
    "admins",
    multiple=True,
    help="An admin client certificate common name; repeatable [default: admin].",
)
@click.option("--days", default=365, show_default=True)
def certs(directory: Path, server_names: tuple[str, ...], edges: tuple[str, ...],
          admins: tuple[str, ...], days: int) -> None:  # fmt: skip
    """Make a development CA and certificates in DIRECTORY (not for production).

    ca.crt signs: server.crt (for policyd and for the edge's STARTTLS), one
    edge-ID.crt client certificate per edge (its common name is the edge id) and
    admin-NAME.crt for admin calls; each with its .key.
    """
    from policyd.certs import DevCA

    names = list(server_names) or ["localhost", "127.0.0.1"]
    ca = DevCA(directory, days)
    made = [directory / "ca.crt", ca.issue("server", names[0], names, server=True)]
    made += [ca.issue(f"edge-{edge}", edge, [], server=False) for edge in edges or ("edge",)]
    made += [ca.issue(f"admin-{a}", a, [], server=False) for a in admins or ("admin",)]
    for path in made:
        click.echo(path)


if __name__ == "__main__":
    main()
