"""gRPC core's I/O engine for both programs, chosen before grpc is imported.

Since grpcio 1.80, gRPC Python runs its sockets on the EventEngine by default.
For this service's traffic (small messages on long-lived streams, one in
flight per SMTP command on an idle edge) the older iomgr poller costs less:
measured on the benchmark machine, a bare grpc.aio stream round trip takes
about 130 µs of CPU in each process instead of about 215, and half the wall
time (`python -m bench.grpc_floor`). Both engines are gRPC's own and chosen
with its documented GRPC_EXPERIMENTS variable; an operator who sets it keeps
their choice. gRPC reads it once, when grpc is first imported, so the package
of each program calls `choose()` before anything imports grpc.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

ENVIRONMENT = "GRPC_EXPERIMENTS"
IOMGR = "-event_engine_client,-event_engine_listener"  # grpcio's experiments, switched off


def choose(environ: MutableMapping[str, str] = os.environ) -> str:
    """Selects iomgr unless the environment already names gRPC experiments; the
    setting in force (for this process only if grpc is not imported yet; child
    processes inherit it either way)."""
    return environ.setdefault(ENVIRONMENT, IOMGR)
