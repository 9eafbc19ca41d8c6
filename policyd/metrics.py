"""The daemon's Prometheus metrics (served on --metrics HOST:PORT)."""

from __future__ import annotations

from functools import cache
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

EVALUATIONS = Counter(
    "policyd_evaluations",
    "Requests evaluated, by event and action (continue for events without a handler)",
    ["event", "action"],
)
EVALUATION_SECONDS = Histogram(
    "policyd_evaluation_seconds",
    "Time to evaluate one request with a handler",
    ["event"],
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.2, 1.0),
)
POLICY_ERRORS = Counter(
    "policyd_policy_errors",
    "Evaluations that failed with a policy error, by kind (error, or the limit hit)",
    ["kind"],
)
INVALID_REQUESTS = Counter("policyd_invalid_requests", "Requests refused with INVALID_ARGUMENT")
THROTTLE_FAILURES = Counter(
    "policyd_throttle_redis_failures",
    "Throttle uses that Redis did not answer, by what the daemon did (error or allow)",
    ["on_failure"],
)
DNS_LOOKUPS = Counter(
    "policyd_dns_lookups",
    "kumo.dns record lookups by type and outcome (cached, answer, nxdomain, nodata, failure)",
    ["type", "outcome"],
)
MEMOIZE_LOOKUPS = Counter(
    "policyd_memoize_lookups",
    "kumo.memoize lookups by cache and outcome (hit, miss, error: a cached failure)",
    ["cache", "outcome"],
)
RELOADS = Counter("policyd_reloads", "Reload attempts by outcome", ["outcome"])
# 1 for the active revision (0 for one it replaced). A gauge rather than an Info,
# so that it is also reported under --workers (multiprocess mode has no Info).
REVISION = Gauge(
    "policyd_revision_info",
    "The active policy revision",
    ["revision", "trigger"],
    multiprocess_mode="liveall",
)


def revision_active(revision: str, trigger: str, previous: tuple[str, str] | None) -> None:
    if previous is not None:
        REVISION.labels(*previous).set(0)
    REVISION.labels(revision, trigger).set(1)


@cache
def evaluations(event: str, action: str) -> Any:
    """EVALUATIONS' series for one event and action (looked up once: it is counted per request)."""
    return EVALUATIONS.labels(event, action)


@cache
def evaluation_seconds(event: str) -> Any:
    return EVALUATION_SECONDS.labels(event)
