"""Who a granted AUTH makes the session, for the edge and the policy test runner
alike: the identities of the AuthInfo the policy returned, else the command's
own (an empty authz standing for authc, as in KumoMTA), with the identities
KumoMTA records for them."""

from __future__ import annotations

from policy.v1 import policy_pb2 as pb


def granted(verdict: pb.Verdict, authz: str, authc: str) -> pb.AuthInfo:
    """The session's identities after `verdict` granted AUTH as authz/authc."""
    if verdict.HasField("auth_info"):
        return verdict.auth_info
    authz = authz or authc
    identities = [
        pb.Identity(identity=authz, context="SmtpAuthPlainAuthorization"),
        pb.Identity(identity=authc, context="SmtpAuthPlainAuthentication"),
    ]
    return pb.AuthInfo(authn_id=authc, authz_id=authz, identities=identities)
