"""Command line: `policyd serve`. Every flag can also be set from the environment
(POLICYD_<FLAG>); the command line only builds a ServeConfig and runs a Server."""

from __future__ import annotations

import signal
import sys
from functools import partial
from pathlib import Path
from typing import Any

import click

from policy import logs, workers
from policy.loop import run
from policy.options import ADDRESS_OR_UNIX, AddressType, Options
from policyd.config import REDIS_FAILURE_MODES, WATCH_MODES, Limits, ServeConfig
from policyd.source import PolicyError, PolicySource

_DEFAULTS = ServeConfig(Path("policy.lua"))
_LIMITS = Limits()
opt = Options("POLICYD").option
FILE = click.Path(dir_okay=False, path_type=Path)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
def main() -> None:
    """policyd: evaluates KumoMTA-style Lua policies for SMTP edges over gRPC."""


@main.command()
@opt(
    "--policy",
    type=click.Path(path_type=Path),
    required=True,
    help="Policy file, or directory with an init.lua.",
)
@opt(
    "--listen",
    type=ADDRESS_OR_UNIX,
    default=str(_DEFAULTS.listen),
    help="gRPC listen address HOST:PORT or unix:PATH (port 0 picks a free port).",
)
@opt(
    "--shutdown-grace",
    type=float,
    default=_DEFAULTS.shutdown_grace,
    help="Seconds in-flight calls get to finish on SIGTERM.",
)
@opt(
    "--watch",
    type=click.Choice(WATCH_MODES),
    default=_DEFAULTS.watch,
    help="Reload on file changes: file events plus polling, polling only (for mounts "
    "that deliver no events), or off. SIGHUP and the Reload RPC always work.",
)
@opt(
    "--poll-interval",
    type=float,
    default=_DEFAULTS.poll_interval,
    help="Seconds between checks of the policy files, for file systems without change events.",
)
@opt(
    "--max-message-size",
    type=int,
    default=_DEFAULTS.max_message_size,
    help="Largest message a data-phase request may carry, in bytes.",
)
@opt(
    "--eval-timeout",
    type=float,
    default=_LIMITS.seconds,
    help="Seconds one evaluation may take (keep it well inside the edges' deadline).",
)
@opt(
    "--eval-instructions",
    type=int,
    default=_LIMITS.instructions,
    help="Lua instructions one evaluation may run.",
)
@opt(
    "--eval-slice",
    type=int,
    default=_LIMITS.slice,
    help="Instructions an evaluation may run on the event loop before it moves to an "
    "overflow worker.",
)
@opt("--max-memory", type=int, default=_LIMITS.memory, help="Bytes of memory per Lua runtime.")
@opt(
    "--secrets-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="A directory, not readable by others, that key files named by an absolute path "
    "(DKIM signing keys, HMAC keys) may be read from; they are not part of a revision.",
)
@opt(
    "--overflow-workers",
    type=int,
    default=_DEFAULTS.overflow_workers,
    help="Worker threads, each with its own Lua runtime, for long evaluations.",
)
@opt(
    "--decision-log",
    default=_DEFAULTS.decision_log,
    help="Where one JSON line per verdict goes: - (standard output), a file path, or off.",
)
@opt(
    "--dry-run/--no-dry-run",
    default=False,
    help="Evaluate and log every decision (marked dry_run) but tell edges to continue.",
)
@opt(
    "--wait-for-policy/--no-wait-for-policy",
    default=False,
    help="Start even when the policy is missing or broken: health reports NOT_SERVING "
    "and calls get UNAVAILABLE until a good revision loads.",
)
@opt(
    "--redis",
    default=None,
    help="redis://HOST:PORT/ for throttles shared by every daemon (overrides the policy's "
    "kumo.configure_redis_throttles; without either, throttles count in memory).",
)
@opt(
    "--redis-timeout",
    type=float,
    default=_DEFAULTS.redis_timeout,
    help="Seconds a throttle waits for Redis.",
)
@opt(
    "--redis-failure",
    type=click.Choice(REDIS_FAILURE_MODES),
    default=_DEFAULTS.redis_failure,
    help="When Redis fails: a policy error (421 4.3.0 technical difficulties unless the "
    "policy catches it), or count the use as not throttled.",
)
@opt(
    "--dns-server",
    "dns_servers",
    multiple=True,
    type=AddressType(default_port=53),
    help="Name server for kumo.dns, IP or IP:PORT; repeatable  [default: the system's].",
)
@opt(
    "--dns-timeout",
    type=float,
    default=_DEFAULTS.dns_timeout,
    help="Seconds one DNS try waits for an answer (a lookup also ends with its evaluation).",
)
@opt(
    "--dns-attempts",
    type=click.IntRange(1),
    default=_DEFAULTS.dns_attempts,
    help="Tries per DNS lookup.",
)
@opt(
    "--dns-cache-size",
    type=click.IntRange(0),
    default=_DEFAULTS.dns_cache_size,
    help="DNS answers kept (each for its TTL; 0: no cache).",
)
@opt("--tls-cert", type=FILE, help="Serve TLS with this certificate (PEM).")
@opt("--tls-key", type=FILE, help="Its private key (PEM).")
@opt(
    "--tls-client-ca",
    type=FILE,
    help="Require client certificates signed by this CA (mutual TLS); an edge's "
    "edge id must be its certificate's common name.",
)
@opt(
    "--allow-plaintext/--no-allow-plaintext",
    default=False,
    help="Allow plaintext on an address that is not loopback or a Unix socket.",
)
@opt("--admin-token-file", type=FILE, help="Admin calls (Status, Reload) need this bearer token.")
@opt(
    "--admin-subject",
    "admin_subjects",
    multiple=True,
    help="Client certificate common names allowed admin calls; repeatable. Without "
    "this or a token, only local callers (loopback, Unix socket) may use them.",
)
@Options("POLICYD").process("Processes serving the same port (each with its own runtimes).")
def serve(workers: int, loop: str, log_level: str, **options: Any) -> None:
    """Serve the policy over gRPC; reload it on change, SIGHUP or the Reload RPC."""
    logs.configure(log_level)
    try:
        config = make_config(**options)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    try:
        if workers == 1:
            _serve(config, loop, log_level, None)
        else:
            sys.exit(_supervise(config, workers, loop, log_level))
    except PolicyError as e:
        click.echo(f"policyd: cannot load policy {config.policy}: {e}", err=True)
        sys.exit(2)
    except OSError as e:
        click.echo(f"policyd: {e}", err=True)
        sys.exit(1)


def make_config(
    eval_timeout: float,
    eval_instructions: int,
    eval_slice: int,
    max_memory: int,
    secrets_dir: Path | None = None,
    **options: Any,
) -> ServeConfig:
    """The ServeConfig for serve's options (those of the process aside); ValueError
    when they do not work together."""
    if secrets_dir is not None:
        check_secrets_dir(secrets_dir)
    limits = Limits(
        seconds=eval_timeout,
        instructions=eval_instructions,
        slice=eval_slice,
        memory=max_memory,
        secrets_dir=secrets_dir,
    )
    return ServeConfig(limits=limits, **options)


def check_secrets_dir(path: Path) -> None:
    """ValueError unless `path` is a directory only its owner's group may read."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise ValueError(f"--secrets-dir {path}: {e.strerror}") from None
    if not path.is_dir():
        raise ValueError(f"--secrets-dir {path} is not a directory")
    if mode & 0o007:
        raise ValueError(
            f"--secrets-dir {path} is open to others (mode {mode & 0o777:o}); chmod o-rwx it"
        )


def _serve(config: ServeConfig, loop: str, log_level: str, on_ready: Any) -> None:
    from policyd.server import Server  # after logging is set up: it loads gRPC

    if config.worker:
        # A SIGHUP relayed before the server handles it must not kill the worker;
        # it loads the current policy as it starts anyway.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        logs.configure(log_level)
    run(Server(config, on_ready=on_ready).serve(), loop)


def _supervise(config: ServeConfig, count: int, loop: str, log_level: str) -> int:
    """--workers: refuse a broken policy before starting any, then supervise them.
    A worker's Reload RPC sends the supervisor SIGHUP, which reloads them all."""
    from dataclasses import replace

    from policyd.store import Engine, prepare

    if not config.wait_for_policy:
        prepare(PolicySource.at(config.policy), "startup", Engine(config.limits))
    listen = workers.fixed_port(config.listen)
    worker_config = replace(config, listen=listen, metrics=None, worker=True)
    return workers.supervise(
        partial(_serve, worker_config, loop, log_level),
        count,
        address=listen,
        metrics=config.metrics,
        grace=config.shutdown_grace,
        forward=(signal.SIGHUP,),
    )
