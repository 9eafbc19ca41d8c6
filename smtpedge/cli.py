"""Command line: `smtpedge serve`. Every flag can also be set from the environment."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from smtpedge import logs
from smtpedge.config import EdgeConfig, split_host_port
from smtpedge.relay import RelayTarget
from smtpedge.server import EdgeServer, run
from smtpedge.stages import Stage
from smtpedge.workers import serve_workers

_DEFAULTS = EdgeConfig()
_STAGES = [s.value for s in Stage]


def _host_port(ctx: click.Context, param: click.Parameter, value: str | tuple[str, ...] | None):
    for item in (value,) if isinstance(value, str) else value or ():
        if param.name == "policy_servers" and item.startswith("unix:"):
            continue
        try:
            split_host_port(item)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None
    return value


def _relay(value: str | None) -> str | None:
    if value:
        try:
            RelayTarget.parse(value)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None
    return value


def _labels(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]):
    out = {}
    for item in value:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}")
        out[key] = val
    return out


def _stage_timeouts(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]):
    out = {}
    for item in value:
        name, _, seconds = item.partition("=")
        try:
            out[Stage(name)] = float(seconds)
        except ValueError:
            raise click.BadParameter(
                f"expected STAGE=SECONDS with STAGE one of {', '.join(_STAGES)}, got {item!r}"
            ) from None
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
def main() -> None:
    """smtpedge: an SMTP server that asks a policy daemon at every stage."""


@main.command()
@click.option(
    "--listen",
    default=_DEFAULTS.listen,
    envvar="SMTPEDGE_LISTEN",
    show_envvar=True,
    callback=_host_port,
    help="SMTP listen address HOST:PORT (port 0 picks a free port).",
)
@click.option(
    "--policy-server",
    "policy_servers",
    multiple=True,
    default=_DEFAULTS.policy_servers,
    envvar="SMTPEDGE_POLICY_SERVER",
    show_envvar=True,
    callback=_host_port,
    help="A policy daemon HOST:PORT; repeat for several (calls are balanced and fail "
    "over). A name resolving to several addresses reaches them all.",
)
@click.option(
    "--hostname",
    default=_DEFAULTS.hostname,
    envvar="SMTPEDGE_HOSTNAME",
    show_envvar=True,
    help="Host name used in the banner and in replies.",
)
@click.option(
    "--edge-id",
    default=None,
    envvar="SMTPEDGE_EDGE_ID",
    show_envvar=True,
    help="This edge's id, conn_meta 'edge_id' in the policy  [default: the host name]",
)
@click.option(
    "--meta",
    "labels",
    multiple=True,
    callback=_labels,
    envvar="SMTPEDGE_META",
    show_envvar=True,
    metavar="KEY=VALUE",
    help="Listener metadata, conn_meta KEY in the policy; repeatable.",
)
@click.option(
    "--maildir",
    type=click.Path(file_okay=False, path_type=Path),
    default=_DEFAULTS.maildir,
    envvar="SMTPEDGE_MAILDIR",
    show_envvar=True,
    help="Maildir that accepted messages are stored in.",
)
@click.option(
    "--relay",
    default=None,
    envvar="SMTPEDGE_RELAY",
    show_envvar=True,
    callback=lambda ctx, param, value: _relay(value),
    help="Relay to an upstream MTA (smtp://HOST:PORT or lmtp://HOST:PORT, "
    "?starttls=require|opportunistic, &verify=no) instead of storing in the Maildir.",
)
@click.option(
    "--relay-timeout",
    type=float,
    default=_DEFAULTS.relay_timeout,
    envvar="SMTPEDGE_RELAY_TIMEOUT",
    show_envvar=True,
    help="Seconds to wait for the upstream at each step (then 451 4.4.1).",
)
@click.option(
    "--relay-pool",
    type=click.IntRange(min=0),
    default=_DEFAULTS.relay_pool,
    envvar="SMTPEDGE_RELAY_POOL",
    show_envvar=True,
    help="Idle upstream connections kept for reuse.",
)
@click.option(
    "--received-header/--no-received-header",
    default=_DEFAULTS.received_header,
    envvar="SMTPEDGE_RECEIVED_HEADER",
    show_envvar=True,
    help="Prepend a Received: trace header to accepted messages.",
)
@click.option(
    "--dry-run/--no-dry-run",
    default=False,
    envvar="SMTPEDGE_DRY_RUN",
    show_envvar=True,
    help="Ask the daemon for dry runs: decisions are made and logged (marked dry_run), "
    "and this edge is told to continue.",
)
@click.option(
    "--policy-streams",
    type=click.IntRange(min=0),
    default=_DEFAULTS.policy_streams,
    envvar="SMTPEDGE_POLICY_STREAMS",
    show_envvar=True,
    help="Streams (each on its own connection) per policy daemon; 0 makes one unary call "
    "per event instead.",
)
@click.option(
    "--policy-timeout",
    type=float,
    default=_DEFAULTS.policy_timeout,
    envvar="SMTPEDGE_POLICY_TIMEOUT",
    show_envvar=True,
    help="Seconds to wait for a verdict before the fail-mode reply.",
)
@click.option(
    "--stage-timeout",
    "stage_timeouts",
    multiple=True,
    callback=_stage_timeouts,
    envvar="SMTPEDGE_STAGE_TIMEOUT",
    show_envvar=True,
    metavar="STAGE=SECONDS",
    help=f"Deadline for one stage ({', '.join(_STAGES)}); repeatable.",
)
@click.option(
    "--fail-open",
    multiple=True,
    type=click.Choice(_STAGES),
    envvar="SMTPEDGE_FAIL_OPEN",
    show_envvar=True,
    help="Accept the command when no verdict arrives at this stage (logged and "
    "counted); repeatable. By default every stage fails with a temporary error.",
)
@click.option(
    "--max-message-size",
    type=int,
    default=_DEFAULTS.max_message_size,
    envvar="SMTPEDGE_MAX_MESSAGE_SIZE",
    show_envvar=True,
    help="Largest message accepted, in bytes (552 5.3.4 beyond).",
)
@click.option(
    "--max-recipients",
    type=int,
    default=_DEFAULTS.max_recipients,
    envvar="SMTPEDGE_MAX_RECIPIENTS",
    show_envvar=True,
    help="Recipients per transaction (452 4.5.3 beyond).",
)
@click.option(
    "--max-connections",
    type=int,
    default=_DEFAULTS.max_connections,
    envvar="SMTPEDGE_MAX_CONNECTIONS",
    show_envvar=True,
    help="Concurrent connections (421 4.3.2 beyond).",
)
@click.option(
    "--idle-timeout",
    type=float,
    default=_DEFAULTS.idle_timeout,
    envvar="SMTPEDGE_IDLE_TIMEOUT",
    show_envvar=True,
    help="Seconds a silent client is kept before 421 4.4.2.",
)
@click.option(
    "--shutdown-grace",
    type=float,
    default=_DEFAULTS.shutdown_grace,
    envvar="SMTPEDGE_SHUTDOWN_GRACE",
    show_envvar=True,
    help="Seconds sessions get to finish on SIGTERM.",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SMTPEDGE_TLS_CERT",
    show_envvar=True,
    help="Certificate (PEM) for STARTTLS and --tls-listen.",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SMTPEDGE_TLS_KEY",
    show_envvar=True,
    help="Its private key (PEM).",
)
@click.option(
    "--tls-client-ca",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SMTPEDGE_TLS_CLIENT_CA",
    show_envvar=True,
    help="Ask SMTP clients for certificates signed by this CA; "
    "the subject of one that verifies reaches the policy as tls_peer_subject_name.",
)
@click.option(
    "--require-tls/--no-require-tls",
    default=False,
    envvar="SMTPEDGE_REQUIRE_TLS",
    show_envvar=True,
    help="Refuse MAIL, RCPT and DATA before STARTTLS (530 5.7.0).",
)
@click.option(
    "--tls-listen",
    default=None,
    envvar="SMTPEDGE_TLS_LISTEN",
    show_envvar=True,
    callback=_host_port,
    help="Also listen on HOST:PORT with TLS from the first byte (port 465 style).",
)
@click.option(
    "--policy-tls-ca",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SMTPEDGE_POLICY_TLS_CA",
    show_envvar=True,
    help="TLS to the policy daemons: the CA that signed their certificates.",
)
@click.option(
    "--policy-tls-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SMTPEDGE_POLICY_TLS_CERT",
    show_envvar=True,
    help="This edge's client certificate for the policy daemons.",
)
@click.option(
    "--policy-tls-key",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SMTPEDGE_POLICY_TLS_KEY",
    show_envvar=True,
    help="Its private key.",
)
@click.option(
    "--policy-tls-server-name",
    default=None,
    envvar="SMTPEDGE_POLICY_TLS_SERVER_NAME",
    show_envvar=True,
    help="The name to expect in the daemons' certificates, if not the host in --policy-server.",
)
@click.option(
    "--allow-plaintext/--no-allow-plaintext",
    default=False,
    envvar="SMTPEDGE_ALLOW_PLAINTEXT",
    show_envvar=True,
    help="Allow plaintext gRPC to policy daemons that are not on loopback or a Unix "
    "socket (a trusted private network only).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    envvar="SMTPEDGE_WORKERS",
    show_envvar=True,
    help="Processes accepting on the same port.",
)
@click.option(
    "--metrics",
    default=None,
    envvar="SMTPEDGE_METRICS",
    show_envvar=True,
    callback=_host_port,
    help="Serve Prometheus metrics on HOST:PORT.",
)
@click.option(
    "--loop",
    type=click.Choice(["uvloop", "asyncio"]),
    default="uvloop",
    envvar="SMTPEDGE_LOOP",
    show_envvar=True,
    help="Event loop implementation.",
)
@click.option(
    "--log-level",
    default="info",
    envvar="SMTPEDGE_LOG_LEVEL",
    show_envvar=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def serve(
    workers: int, loop: str, log_level: str, fail_open: tuple[str, ...], **options: object
) -> None:
    """Serve SMTP, asking the policy daemon at every stage."""
    logs.configure(log_level)
    config = EdgeConfig(fail_open=frozenset(Stage(s) for s in fail_open), **options)  # type: ignore[arg-type]
    try:
        config.validate()
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    try:
        if workers == 1:
            run(EdgeServer(config).serve(), loop)
        else:
            sys.exit(serve_workers(config, workers, loop, log_level))
    except OSError as e:
        click.echo(f"smtpedge: {e}", err=True)
        sys.exit(1)
