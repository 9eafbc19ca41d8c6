"""The edge's Prometheus metrics (served on --metrics HOST:PORT)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SESSIONS = Counter("smtpedge_sessions", "SMTP sessions accepted")
SESSIONS_OPEN = Gauge(
    "smtpedge_sessions_open", "SMTP sessions open now", multiprocess_mode="livesum"
)
COMMANDS = Counter(
    "smtpedge_commands", "SMTP commands received, by verb (unknown verbs as UNKNOWN)", ["command"]
)
REPLIES = Counter("smtpedge_replies", "Replies sent, by class (2xx, 3xx, 4xx, 5xx)", ["class"])
POLICY_CALL_SECONDS = Histogram(
    "smtpedge_policy_call_seconds",
    "Time from asking the policy to having its verdict, by stage",
    ["stage"],
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
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
MESSAGES_ACCEPTED = Counter(
    "smtpedge_messages_accepted", "Messages acknowledged with 250 (stored or relayed)"
)
MESSAGE_BYTES = Counter("smtpedge_message_bytes", "Bytes of the messages acknowledged")
CONNECTIONS_REFUSED = Counter(
    "smtpedge_connections_refused",
    "Connections refused by the edge's own limits",
    ["reason"],
)

REPLY_CLASS = {digit: REPLIES.labels(f"{digit}xx") for digit in "2345"}
