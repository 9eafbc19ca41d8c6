"""Command line: `policyd serve`. Every flag can also be set from the environment."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from policyd import logs
from policyd.config import ServeConfig
from policyd.server import Server
from policyd.source import PolicyError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
def main() -> None:
    """policyd: evaluates KumoMTA-style Lua policies for SMTP edges over gRPC."""


@main.command()
@click.option(
    "--policy",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    envvar="POLICYD_POLICY",
    show_envvar=True,
    help="Policy file, or directory with an init.lua.",
)
@click.option(
    "--listen",
    default=ServeConfig.listen,
    envvar="POLICYD_LISTEN",
    show_envvar=True,
    help="gRPC listen address HOST:PORT (port 0 picks a free port).",
)
@click.option(
    "--shutdown-grace",
    type=float,
    default=ServeConfig.shutdown_grace,
    envvar="POLICYD_SHUTDOWN_GRACE",
    show_envvar=True,
    help="Seconds in-flight calls get to finish on SIGTERM.",
)
@click.option(
    "--watch",
    type=click.Choice(["events", "poll", "off"]),
    default=ServeConfig.watch,
    envvar="POLICYD_WATCH",
    show_envvar=True,
    help="Reload on file changes: file events plus polling, polling only (for mounts "
    "that deliver no events), or off. SIGHUP and the Reload RPC always work.",
)
@click.option(
    "--poll-interval",
    type=float,
    default=ServeConfig.poll_interval,
    envvar="POLICYD_POLL_INTERVAL",
    show_envvar=True,
    help="Seconds between checks of the policy files, for file systems without change events.",
)
@click.option(
    "--max-request-size",
    type=int,
    default=ServeConfig.max_request_size,
    envvar="POLICYD_MAX_REQUEST_SIZE",
    show_envvar=True,
    help="Largest request accepted, in bytes (data-phase requests carry the message).",
)
@click.option(
    "--log-level",
    default="info",
    type=click.Choice(["debug", "info", "warning", "error"]),
    envvar="POLICYD_LOG_LEVEL",
    show_envvar=True,
)
def serve(log_level: str, **options: object) -> None:
    """Serve the policy over gRPC; reload it on change, SIGHUP or the Reload RPC."""
    logs.configure(log_level)
    config = ServeConfig(**options)  # type: ignore[arg-type]
    policy = config.policy
    try:
        asyncio.run(Server(config).serve())
    except PolicyError as e:
        click.echo(f"policyd: cannot load policy {policy}: {e}", err=True)
        sys.exit(2)
    except OSError as e:
        click.echo(f"policyd: {e}", err=True)
        sys.exit(1)
