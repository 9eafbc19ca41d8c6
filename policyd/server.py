"""The daemon's lifecycle: load the policy, serve gRPC, stop gracefully.

SIGTERM and SIGINT stop accepting calls and give in-flight ones
`shutdown_grace` seconds; a second signal stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc

from policy.v1 import policy_pb2_grpc as pb_grpc
from policyd.config import ServeConfig
from policyd.evaluate import Evaluator
from policyd.runtime import LuaPolicy
from policyd.service import PolicyService
from policyd.source import PolicySource

log = logging.getLogger("policyd.server")


def bound_address(listen: str, port: int) -> str:
    host = listen.rsplit(":", 1)[0]
    return f"{host}:{port}"


class Server:
    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self._stop = asyncio.Event()
        self._grpc: grpc.aio.Server | None = None

    async def startup(self) -> None:
        """Loads the policy (PolicyError if it is broken), then binds and serves."""
        policy = LuaPolicy(PolicySource.at(self.config.policy))
        log.info(
            "policy loaded",
            extra={
                "revision": policy.revision,
                "files": sorted(policy.files),
                "handlers": list(policy.handled_events),
            },
        )
        if not policy.handled_events:
            log.warning("policy registers no handlers: every command is accepted")
        server = grpc.aio.server()
        pb_grpc.add_PolicyServiceServicer_to_server(PolicyService(Evaluator(policy)), server)
        try:
            port = server.add_insecure_port(self.config.listen)
        except RuntimeError:
            port = 0
        if port == 0:
            raise OSError(f"cannot listen on {self.config.listen}")
        await server.start()
        self._grpc = server
        log.info("listening", extra={"address": bound_address(self.config.listen, port)})

    async def shutdown(self) -> None:
        if self._grpc is not None:
            log.info("shutting down", extra={"grace_seconds": self.config.shutdown_grace})
            await self._grpc.stop(self.config.shutdown_grace)
        log.info("stopped")

    async def serve(self) -> None:
        await self.startup()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal)
        try:
            await self._stop.wait()
        finally:
            await self.shutdown()

    def _on_signal(self) -> None:
        if self._stop.is_set():
            raise SystemExit(1)  # second signal: stop now
        self._stop.set()
