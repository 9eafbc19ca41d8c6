"""The daemon's lifecycle: load the policy, serve gRPC, reload, stop gracefully.

SIGHUP reloads the policy. SIGTERM and SIGINT stop accepting calls and give
in-flight ones `shutdown_grace` seconds; a second signal stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import grpc

from policy.v1 import policy_pb2_grpc as pb_grpc
from policyd.config import ServeConfig
from policyd.service import AdminService, PolicyService
from policyd.source import PolicySource
from policyd.store import RevisionStore
from policyd.watch import watch

log = logging.getLogger("policyd.server")


def bound_address(listen: str, port: int) -> str:
    host = listen.rsplit(":", 1)[0]
    return f"{host}:{port}"


class Server:
    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.store = RevisionStore(PolicySource.at(config.policy))
        self._stop = asyncio.Event()
        self._grpc: grpc.aio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def startup(self) -> None:
        """Loads the first revision (PolicyError if it is not fit to serve), then serves."""
        self.store.load_initial()
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self.config.max_request_size),
                ("grpc.max_send_message_length", self.config.max_request_size),
            ]
        )
        pb_grpc.add_PolicyServiceServicer_to_server(PolicyService(self.store), server)
        pb_grpc.add_PolicyAdminServicer_to_server(AdminService(self.store), server)
        try:
            port = server.add_insecure_port(self.config.listen)
        except RuntimeError:
            port = 0
        if port == 0:
            raise OSError(f"cannot listen on {self.config.listen}")
        await server.start()
        self._grpc = server
        if self.config.watch != "off":
            self._spawn(
                watch(
                    self.store.source,
                    lambda: self.store.reload("watch"),
                    events=self.config.watch == "events",
                    poll_interval=self.config.poll_interval,
                )
            )
        log.info("listening", extra={"address": bound_address(self.config.listen, port)})

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._grpc is not None:
            log.info("shutting down", extra={"grace_seconds": self.config.shutdown_grace})
            await self._grpc.stop(self.config.shutdown_grace)
        log.info("stopped")

    async def serve(self) -> None:
        await self.startup()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.store.reload("sighup")))
        try:
            await self._stop.wait()
        finally:
            await self.shutdown()

    def _on_stop_signal(self) -> None:
        if self._stop.is_set():
            raise SystemExit(1)  # second signal: stop now
        self._stop.set()
