"""The words policies, logs and test cases use for actions and disconnect modes,
and the contract's values for them, both ways."""

from __future__ import annotations

from policy.v1 import policy_pb2 as pb

ACTION_NAMES: dict[pb.Action, str] = {
    pb.ACTION_CONTINUE: "continue",
    pb.ACTION_REJECT: "reject",
    pb.ACTION_DISCONNECT: "disconnect",
    pb.ACTION_ERROR: "error",
}
ACTIONS: dict[str, pb.Action] = {name: action for action, name in ACTION_NAMES.items()}

# KumoMTA's names (kumo.disconnect's third argument).
MODE_NAMES: dict[pb.DisconnectMode, str] = {
    pb.DISCONNECT_MODE_IF_421: "If421",
    pb.DISCONNECT_MODE_FOLLOW_WITH_421: "FollowWith421",
    pb.DISCONNECT_MODE_FORCE_DISCONNECT: "ForceDisconnect",
}
MODES: dict[str, pb.DisconnectMode] = {name: mode for mode, name in MODE_NAMES.items()}
