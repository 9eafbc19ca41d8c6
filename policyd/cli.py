"""Command line: `policyd serve`. Every flag can also be set from the environment."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from policyd import logs
from policyd.config import ServeConfig
from policyd.runtime import Limits
from policyd.server import Server, run
from policyd.source import PolicyError, PolicySource
from policyd.store import Engine, prepare
from policyd.workers import serve_workers


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
def main() -> None:
    """policyd: evaluates KumoMTA-style Lua policies for SMTP edges over gRPC."""


@main.command()
@click.option(
    "--policy",
    type=click.Path(path_type=Path),
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
    "--max-message-size",
    type=int,
    default=ServeConfig.max_message_size,
    envvar="POLICYD_MAX_MESSAGE_SIZE",
    show_envvar=True,
    help="Largest message a data-phase request may carry, in bytes.",
)
@click.option(
    "--eval-timeout",
    type=float,
    default=Limits.seconds,
    envvar="POLICYD_EVAL_TIMEOUT",
    show_envvar=True,
    help="Seconds one evaluation may take (keep it well inside the edges' deadline).",
)
@click.option(
    "--eval-instructions",
    type=int,
    default=Limits.instructions,
    envvar="POLICYD_EVAL_INSTRUCTIONS",
    show_envvar=True,
    help="Lua instructions one evaluation may run.",
)
@click.option(
    "--eval-slice",
    type=int,
    default=Limits.slice,
    envvar="POLICYD_EVAL_SLICE",
    show_envvar=True,
    help="Instructions an evaluation may run on the event loop before it moves to an "
    "overflow worker.",
)
@click.option(
    "--max-memory",
    type=int,
    default=Limits.memory,
    envvar="POLICYD_MAX_MEMORY",
    show_envvar=True,
    help="Bytes of memory per Lua runtime.",
)
@click.option(
    "--overflow-workers",
    type=int,
    default=ServeConfig.overflow_workers,
    envvar="POLICYD_OVERFLOW_WORKERS",
    show_envvar=True,
    help="Worker threads, each with its own Lua runtime, for long evaluations.",
)
@click.option(
    "--decision-log",
    default=ServeConfig.decision_log,
    envvar="POLICYD_DECISION_LOG",
    show_envvar=True,
    help="Where one JSON line per verdict goes: - (standard output), a file path, or off.",
)
@click.option(
    "--dry-run/--no-dry-run",
    default=False,
    envvar="POLICYD_DRY_RUN",
    show_envvar=True,
    help="Evaluate and log every decision (marked dry_run) but tell edges to continue.",
)
@click.option(
    "--wait-for-policy/--no-wait-for-policy",
    default=False,
    envvar="POLICYD_WAIT_FOR_POLICY",
    show_envvar=True,
    help="Start even when the policy is missing or broken: health reports NOT_SERVING "
    "and calls get UNAVAILABLE until a good revision loads.",
)
@click.option(
    "--redis",
    default=None,
    envvar="POLICYD_REDIS",
    show_envvar=True,
    help="redis://HOST:PORT/ for throttles shared by every daemon (overrides the policy's "
    "kumo.configure_redis_throttles; without either, throttles count in memory).",
)
@click.option(
    "--redis-timeout",
    type=float,
    default=ServeConfig.redis_timeout,
    envvar="POLICYD_REDIS_TIMEOUT",
    show_envvar=True,
    help="Seconds a throttle waits for Redis.",
)
@click.option(
    "--dns-server",
    "dns_servers",
    multiple=True,
    envvar="POLICYD_DNS_SERVER",
    show_envvar=True,
    help="Name server for kumo.dns, IP or IP:PORT; repeatable  [default: the system's].",
)
@click.option(
    "--dns-timeout",
    type=float,
    default=ServeConfig.dns_timeout,
    envvar="POLICYD_DNS_TIMEOUT",
    show_envvar=True,
    help="Seconds one DNS try waits for an answer (a lookup also ends with its evaluation).",
)
@click.option(
    "--dns-attempts",
    type=click.IntRange(1),
    default=ServeConfig.dns_attempts,
    envvar="POLICYD_DNS_ATTEMPTS",
    show_envvar=True,
    help="Tries per DNS lookup.",
)
@click.option(
    "--dns-cache-size",
    type=click.IntRange(0),
    default=ServeConfig.dns_cache_size,
    envvar="POLICYD_DNS_CACHE_SIZE",
    show_envvar=True,
    help="DNS answers kept (each for its TTL; 0: no cache).",
)
@click.option(
    "--redis-failure",
    type=click.Choice(["error", "allow"]),
    default=ServeConfig.redis_failure,
    envvar="POLICYD_REDIS_FAILURE",
    show_envvar=True,
    help="When Redis fails: a policy error (421 4.3.0 technical difficulties unless the "
    "policy catches it), or count the use as not throttled.",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="POLICYD_TLS_CERT",
    show_envvar=True,
    help="Serve TLS with this certificate (PEM).",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="POLICYD_TLS_KEY",
    show_envvar=True,
    help="Its private key (PEM).",
)
@click.option(
    "--tls-client-ca",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="POLICYD_TLS_CLIENT_CA",
    show_envvar=True,
    help="Require client certificates signed by this CA (mutual TLS); an edge's "
    "edge id must be its certificate's common name.",
)
@click.option(
    "--allow-plaintext/--no-allow-plaintext",
    default=False,
    envvar="POLICYD_ALLOW_PLAINTEXT",
    show_envvar=True,
    help="Allow plaintext on an address that is not loopback or a Unix socket.",
)
@click.option(
    "--admin-token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="POLICYD_ADMIN_TOKEN_FILE",
    show_envvar=True,
    help="Admin calls (Status, Reload) need this bearer token.",
)
@click.option(
    "--admin-subject",
    "admin_subjects",
    multiple=True,
    envvar="POLICYD_ADMIN_SUBJECT",
    show_envvar=True,
    help="Client certificate common names allowed admin calls; repeatable. Without "
    "this or a token, only local callers (loopback, Unix socket) may use them.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    envvar="POLICYD_WORKERS",
    show_envvar=True,
    help="Processes serving the same port (each with its own runtimes).",
)
@click.option(
    "--metrics",
    default=None,
    envvar="POLICYD_METRICS",
    show_envvar=True,
    help="Serve Prometheus metrics on HOST:PORT.",
)
@click.option(
    "--loop",
    type=click.Choice(["uvloop", "asyncio"]),
    default="uvloop",
    envvar="POLICYD_LOOP",
    show_envvar=True,
    help="Event loop implementation.",
)
@click.option(
    "--log-level",
    default="info",
    type=click.Choice(["debug", "info", "warning", "error"]),
    envvar="POLICYD_LOG_LEVEL",
    show_envvar=True,
)
def serve(
    workers: int,
    loop: str,
    log_level: str,
    eval_timeout: float,
    eval_instructions: int,
    eval_slice: int,
    max_memory: int,
    **options: object,
) -> None:
    """Serve the policy over gRPC; reload it on change, SIGHUP or the Reload RPC."""
    logs.configure(log_level)
    limits = Limits(
        seconds=eval_timeout, instructions=eval_instructions, slice=eval_slice, memory=max_memory
    )
    config = ServeConfig(limits=limits, **options)  # type: ignore[arg-type]
    try:
        config.validate()
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    policy = config.policy
    try:
        if workers == 1:
            run(Server(config).serve(), loop)
        else:
            if not config.wait_for_policy:  # refuse a broken policy before starting workers
                prepare(PolicySource.at(policy), "startup", Engine(limits))
            sys.exit(serve_workers(config, workers, loop, log_level))
    except PolicyError as e:
        click.echo(f"policyd: cannot load policy {policy}: {e}", err=True)
        sys.exit(2)
    except OSError as e:
        click.echo(f"policyd: {e}", err=True)
        sys.exit(1)
