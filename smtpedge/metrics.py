"""The edge's Prometheus metrics (served on --metrics HOST:PORT)."""

from __future__ import annotations

from prometheus_client import Counter

POLICY_FAIL_OPEN = Counter(
    "smtpedge_policy_fail_open",
    "Commands accepted without a verdict because their stage fails open",
    ["stage"],
)
POLICY_UNAVAILABLE = Counter(
    "smtpedge_policy_unavailable",
    "Commands refused with a temporary failure because no verdict arrived",
    ["stage"],
)
CONNECTIONS_REFUSED = Counter(
    "smtpedge_connections_refused",
    "Connections refused by the edge's own limits",
    ["reason"],
)
