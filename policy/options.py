"""Command-line options that can also be set from the environment, done once.

`Options("SMTPEDGE").option("--policy-server", ...)` is click's option with the
environment variable SMTPEDGE_POLICY_SERVER (named after the flag, whatever
the parameter is called) shown in `--help`. `process()` adds the options every
server has: --workers, --loop, --log-level, --metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from policy import addresses
from policy.logs import LEVELS
from policy.loop import LOOPS

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


class AddressType(click.ParamType):
    """HOST:PORT or [IPV6]:PORT (and unix:PATH with `unix`; HOST alone with a
    `default_port`), as a checked Address."""

    def __init__(self, unix: bool = False, default_port: int | None = None) -> None:
        self.unix, self.default_port = unix, default_port
        self.name = ("HOST[:PORT]" if default_port else "HOST:PORT") + (
            "|unix:PATH" if unix else ""
        )

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return self.name  # as written: unix:PATH, not UNIX:PATH

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, addresses.Address):
            return value
        try:
            return addresses.parse(value, unix=self.unix, default_port=self.default_port)
        except ValueError as e:
            self.fail(str(e), param, ctx)


ADDRESS = AddressType()
ADDRESS_OR_UNIX = AddressType(unix=True)


class Options:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def envvar(self, flag: str) -> str:
        """--policy-server -> PREFIX_POLICY_SERVER (for --x/--no-x, the first)."""
        name = flag.split("/")[0].lstrip("-")
        return f"{self.prefix}_{name.replace('-', '_').upper()}"

    def option(self, *decls: str, **attrs: Any) -> Decorator:
        flag = next(d for d in decls if d.startswith("--"))
        attrs.setdefault("envvar", self.envvar(flag))
        attrs.setdefault("show_envvar", True)
        return click.option(*decls, **attrs)

    def process(self, workers_help: str) -> Decorator:
        """--workers, --loop, --log-level and --metrics."""
        decorators = [
            self.option("--workers", type=click.IntRange(min=1), default=1, help=workers_help),
            self.option(
                "--metrics",
                type=ADDRESS,
                default=None,
                help="Serve Prometheus metrics on HOST:PORT (with --workers, of all workers).",
            ),
            self.option(
                "--loop",
                type=click.Choice(LOOPS),
                default="uvloop",
                help="Event loop implementation.",
            ),
            self.option("--log-level", type=click.Choice(LEVELS), default="info"),
        ]

        def apply(command: Callable[..., Any]) -> Callable[..., Any]:
            for decorator in reversed(decorators):
                command = decorator(command)
            return command

        return apply
