"""Command line: `smtpedge serve`. Every flag can also be set from the environment."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from smtpedge import logs
from smtpedge.config import EdgeConfig, split_host_port
from smtpedge.server import EdgeServer

_DEFAULTS = EdgeConfig()


def _host_port(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        split_host_port(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return value


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
    default=_DEFAULTS.policy_server,
    envvar="SMTPEDGE_POLICY_SERVER",
    show_envvar=True,
    help="The policy daemon's gRPC address HOST:PORT.",
)
@click.option(
    "--hostname",
    default=_DEFAULTS.hostname,
    envvar="SMTPEDGE_HOSTNAME",
    show_envvar=True,
    help="Host name used in the banner and in replies.",
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
    "--policy-timeout",
    type=float,
    default=_DEFAULTS.policy_timeout,
    envvar="SMTPEDGE_POLICY_TIMEOUT",
    show_envvar=True,
    help="Seconds to wait for a verdict before the fail-mode reply.",
)
@click.option(
    "--max-message-size",
    type=int,
    default=_DEFAULTS.max_message_size,
    envvar="SMTPEDGE_MAX_MESSAGE_SIZE",
    show_envvar=True,
    help="Largest message accepted, in bytes.",
)
@click.option(
    "--idle-timeout",
    type=float,
    default=_DEFAULTS.idle_timeout,
    envvar="SMTPEDGE_IDLE_TIMEOUT",
    show_envvar=True,
    help="Seconds a silent client is kept before 421.",
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
    "--log-level",
    default="info",
    envvar="SMTPEDGE_LOG_LEVEL",
    show_envvar=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def serve(log_level: str, **options: object) -> None:
    """Serve SMTP, asking the policy daemon at every stage."""
    logs.configure(log_level)
    config = EdgeConfig(**options)  # type: ignore[arg-type]
    try:
        asyncio.run(EdgeServer(config).serve())
    except OSError as e:
        click.echo(f"smtpedge: {e}", err=True)
        sys.exit(1)
