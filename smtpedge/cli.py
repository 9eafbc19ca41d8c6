"""Command line: `smtpedge serve`. Every flag is also an environment variable
(SMTPEDGE_<FLAG>); the command line only builds an EdgeConfig and runs an
EdgeServer (or, with --workers, supervises workers that each do)."""

from __future__ import annotations

import sys
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import click

from policy import logs, workers
from policy.events import Stage
from policy.loop import run
from policy.options import ADDRESS, ADDRESS_OR_UNIX, Options
from policy.v1 import policy_pb2 as pb
from smtpedge.config import EdgeConfig, RelayTarget

_DEFAULTS = EdgeConfig()
BATCH_HANDLING = {
    "BifurcateAlways": pb.BATCH_HANDLING_BIFURCATE_ALWAYS,
    "BatchByDomain": pb.BATCH_HANDLING_BATCH_BY_DOMAIN,
}
_STAGES = [s.value for s in Stage]
opt = Options("SMTPEDGE").option
FILE = click.Path(dir_okay=False, path_type=Path)


def _relay(ctx: click.Context, param: click.Parameter, value: str | None) -> RelayTarget | None:
    if not value:
        return None
    try:
        return RelayTarget.parse(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _labels(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in value:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}")
        out[key] = val
    return out


def _stage_timeouts(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> dict[Stage, float]:
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


def _stages(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> frozenset[Stage]:
    return frozenset(Stage(name) for name in value)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
def main() -> None:
    """smtpedge: an SMTP server that asks a policy daemon at every stage."""


@main.command()
@opt(
    "--listen",
    type=ADDRESS,
    default=str(_DEFAULTS.listen),
    help="SMTP listen address HOST:PORT (port 0 picks a free port).",
)
@opt(
    "--policy-server",
    "policy_servers",
    type=ADDRESS_OR_UNIX,
    multiple=True,
    default=[str(a) for a in _DEFAULTS.policy_servers],
    help="A policy daemon HOST:PORT or unix:PATH; repeat for several (calls are balanced "
    "and fail over). A name resolving to several addresses reaches them all.",
)
@opt(
    "--hostname",
    default=_DEFAULTS.hostname,
    help="Host name used in the banner and in replies  [default: the policy listener's "
    "hostname, else this machine's name]",
)
@opt(
    "--banner",
    default=_DEFAULTS.banner,
    help="The greeting: 220 HOSTNAME BANNER  [default: the policy listener's banner, else "
    f"{_DEFAULTS.banner!r}]",
)
@opt(
    "--edge-id",
    default=None,
    help="This edge's id, conn_meta 'edge_id' in the policy  [default: the host name]",
)
@opt(
    "--meta",
    "labels",
    multiple=True,
    callback=_labels,
    metavar="KEY=VALUE",
    help="Listener metadata, conn_meta KEY in the policy; repeatable.",
)
@opt(
    "--maildir",
    type=click.Path(file_okay=False, path_type=Path),
    default=_DEFAULTS.maildir,
    help="Maildir that accepted messages are stored in.",
)
@opt(
    "--relay",
    default=None,
    callback=_relay,
    help="Relay to an upstream MTA (smtp://HOST:PORT or lmtp://HOST:PORT, "
    "?starttls=require|opportunistic, &verify=no) instead of storing in the Maildir.",
)
@opt(
    "--relay-timeout",
    type=float,
    default=_DEFAULTS.relay_timeout,
    help="Seconds to wait for the upstream at each step (then 451 4.4.1).",
)
@opt(
    "--relay-pool",
    type=click.IntRange(min=0),
    default=_DEFAULTS.relay_pool,
    help="Idle upstream connections kept for reuse.",
)
@opt(
    "--received-header/--no-received-header",
    default=_DEFAULTS.received_header,
    help="Prepend a Received: trace header to accepted messages.",
)
@opt(
    "--batch-handling",
    type=click.Choice(list(BATCH_HANDLING)),
    default=None,
    callback=lambda ctx, param, value: BATCH_HANDLING.get(value, 0),
    help="How a transaction becomes messages when smtp_server_split_transaction does not "
    "say: one per recipient (BifurcateAlways) or per recipient domain (BatchByDomain). "
    "Default: as the policy's listener says, else BifurcateAlways.",
)
@opt(
    "--dry-run/--no-dry-run",
    default=False,
    help="Ask the daemon for dry runs: decisions are made and logged (marked dry_run), "
    "and this edge is told to continue.",
)
@opt(
    "--policy-streams",
    type=click.IntRange(min=0),
    default=_DEFAULTS.policy_streams,
    help="Streams (each on its own connection) per policy daemon; 0 makes one unary call "
    "per event instead.",
)
@opt(
    "--policy-timeout",
    type=float,
    default=_DEFAULTS.policy_timeout,
    help="Seconds to wait for a verdict before the fail-mode reply.",
)
@opt(
    "--stage-timeout",
    "stage_timeouts",
    multiple=True,
    callback=_stage_timeouts,
    metavar="STAGE=SECONDS",
    help=f"Deadline for one stage ({', '.join(_STAGES)}); repeatable.",
)
@opt(
    "--fail-open",
    multiple=True,
    type=click.Choice(_STAGES),
    callback=_stages,
    help="Accept the command when no verdict arrives at this stage (logged and "
    "counted); repeatable. By default every stage fails with a temporary error.",
)
@opt(
    "--max-message-size",
    type=click.IntRange(min=0),
    default=_DEFAULTS.max_message_size,
    help="Largest message accepted, in bytes (552 5.3.4 beyond); 0 for no limit.",
)
@opt(
    "--max-recipients",
    type=click.IntRange(min=1),
    default=_DEFAULTS.max_recipients,
    help="Recipients per transaction (452 4.5.3 beyond).",
)
@opt(
    "--max-messages-per-connection",
    type=click.IntRange(min=1),
    default=_DEFAULTS.max_messages_per_connection,
    help="Recipients per connection, as KumoMTA's max_messages_per_connection counts "
    "them (452 4.5.3 beyond; 421 and close when a transaction has none yet).",
)
@opt(
    "--max-connections",
    type=click.IntRange(min=1),
    default=_DEFAULTS.max_connections,
    help="Concurrent connections, over all listeners (421 4.3.2 beyond).",
)
@opt(
    "--idle-timeout",
    type=float,
    default=_DEFAULTS.idle_timeout,
    help="Seconds a client may go without a recognised command before 421 4.4.2.",
)
@opt(
    "--shutdown-grace",
    type=float,
    default=_DEFAULTS.shutdown_grace,
    help="Seconds sessions get to finish on SIGTERM.",
)
@opt("--tls-cert", type=FILE, help="Certificate (PEM) for STARTTLS and --tls-listen.")
@opt("--tls-key", type=FILE, help="Its private key (PEM).")
@opt(
    "--tls-client-ca",
    type=FILE,
    help="Ask SMTP clients for certificates signed by this CA; "
    "the subject of one that verifies reaches the policy as tls_peer_subject_name.",
)
@opt(
    "--require-tls/--no-require-tls",
    default=False,
    help="Refuse MAIL, RCPT and DATA before STARTTLS (530 5.7.0).",
)
@opt(
    "--tls-listen",
    type=ADDRESS,
    default=None,
    help="Also listen on HOST:PORT with TLS from the first byte (port 465 style).",
)
@opt(
    "--policy-tls-ca",
    type=FILE,
    help="TLS to the policy daemons: the CA that signed their certificates.",
)
@opt("--policy-tls-cert", type=FILE, help="This edge's client certificate for the policy daemons.")
@opt("--policy-tls-key", type=FILE, help="Its private key.")
@opt(
    "--policy-tls-server-name",
    default=None,
    help="The name to expect in the daemons' certificates, if not the host in --policy-server.",
)
@opt(
    "--allow-plaintext/--no-allow-plaintext",
    default=False,
    help="Allow plaintext gRPC to policy daemons that are not on loopback or a Unix "
    "socket (a trusted private network only).",
)
@Options("SMTPEDGE").process("Processes accepting on the same port.")
def serve(workers: int, loop: str, log_level: str, **options: Any) -> None:
    """Serve SMTP, asking the policy daemon at every stage."""
    logs.configure(log_level)
    try:
        config = make_config(**options, explicit=given(click.get_current_context()))
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    try:
        if workers == 1:
            _serve(config, loop, log_level, None)
        else:
            sys.exit(_supervise(config, workers, loop, log_level))
    except OSError as e:
        click.echo(f"smtpedge: {e}", err=True)
        sys.exit(1)


def given(ctx: click.Context) -> frozenset[str]:
    """The options set on the command line or in the environment: those the
    policy's listener does not override."""
    sources = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
    return frozenset(name for name in ctx.params if ctx.get_parameter_source(name) in sources)


def make_config(**options: Any) -> EdgeConfig:
    """The EdgeConfig for serve's options (those of the process aside, but
    --metrics); ValueError when they do not work together."""
    return EdgeConfig(**options)


def _serve(config: EdgeConfig, loop: str, log_level: str, on_ready: Any) -> None:
    from smtpedge.server import EdgeServer  # after logging is set up: it loads gRPC

    if config.worker:
        logs.configure(log_level)  # a fresh process
    run(EdgeServer(config, on_ready=on_ready).serve(), loop)


def _supervise(config: EdgeConfig, count: int, loop: str, log_level: str) -> int:
    """--workers: `count` edges on the same port(s), supervised."""
    listen = workers.fixed_port(config.listen)
    tls_listen = workers.fixed_port(config.tls_listen) if config.tls_listen else None
    worker_config = replace(config, listen=listen, tls_listen=tls_listen, metrics=None, worker=True)
    return workers.supervise(
        partial(_serve, worker_config, loop, log_level),
        count,
        address=listen,
        metrics=config.metrics,
        grace=config.shutdown_grace,
        details={"tls_address": str(tls_listen)} if tls_listen else None,
    )
