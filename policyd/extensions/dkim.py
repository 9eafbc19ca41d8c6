"""kumo.dkim's signers and msg:dkim_sign (policyd/mailauth/dkim_sign.py): the
signer parameters KumoMTA documents, checked; the key a KeySource (a PEM file
of the policy directory, part of the revision like any data file, or
`{key_data = ...}`), loaded once per distinct key and kept (at most 1024)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from policyd.durations import parse_duration
from policyd.extensions import Context, HostFunctions, from_binary, to_python
from policyd.extensions.digest import key_bytes
from policyd.mailauth.arc import seal
from policyd.mailauth.dkim_sign import PrivateKey, Signer, sign
from policyd.source import PolicyError

KEYS = 1024
PARAMS = frozenset(
    ("domain", "selector", "headers", "key", "atps", "atpsh", "agent_user_identifier",
     "expiration", "body_length", "reporting", "header_canonicalization",
     "body_canonicalization", "ttl", "over_sign")
)  # fmt: skip
CANONS = {"Relaxed": "relaxed", "Simple": "simple"}


def _key(data: bytes, kind: str) -> PrivateKey:
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise ValueError(f"the key is not an unencrypted PEM private key ({e})") from None
    wanted = rsa.RSAPrivateKey if kind == "rsa" else ed25519.Ed25519PrivateKey
    if not isinstance(key, wanted):
        raise ValueError(f"the key is not an {'RSA' if kind == 'rsa' else 'Ed25519'} key")
    return key


def signer(params: dict[str, Any], key: Callable[[], PrivateKey]) -> Signer:
    """The parameters checked (ValueError for what KumoMTA would refuse), then
    the key loaded."""
    unknown = sorted(str(k) for k in params if k not in PARAMS)
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r}")
    for name in ("domain", "selector"):
        if not isinstance(params.get(name), str) or not params[name]:
            raise ValueError(f"{name} is required (a string)")
    headers = params.get("headers")
    if (
        not isinstance(headers, list)
        or not headers
        or not all(isinstance(h, str) and h and ":" not in h for h in headers)
    ):
        raise ValueError("headers is required: a list of header names")
    canons = []
    for name in ("header_canonicalization", "body_canonicalization"):
        value = params.get(name, "Relaxed")
        if value not in CANONS:
            raise ValueError(f"{name} must be Relaxed or Simple, not {value!r}")
        canons.append(CANONS[value])
    expiration = params.get("expiration")
    if expiration is not None and (not isinstance(expiration, int) or expiration <= 0):
        raise ValueError("expiration must be a positive number of seconds")
    auid = params.get("agent_user_identifier")
    if auid is not None and not isinstance(auid, str):
        raise ValueError("agent_user_identifier must be a string")
    if "ttl" in params:
        parse_duration(params["ttl"], "ttl")  # checked; keys stay until evicted instead
    return Signer(
        params["domain"], params["selector"], tuple(headers), key(), canons[0], canons[1],
        expiration, params.get("body_length") is True, params.get("over_sign") is True, auid,
    )  # fmt: skip


def functions(context: Context) -> HostFunctions:
    keys: OrderedDict[tuple[str, str, str], PrivateKey] = OrderedDict()

    def load(kind: str, source: str, value: str) -> PrivateKey:
        cached = keys.get((kind, source, value))
        if cached is None:
            cached = _key(key_bytes(context, source, value), kind)
            keys[(kind, source, value)] = cached
            while len(keys) > KEYS:
                keys.popitem(last=False)
        keys.move_to_end((kind, source, value))
        return cached

    def check(kind: str, params: Any, source: str, value: str) -> tuple[bool | None, str | None]:
        try:
            signer(to_python(params), lambda: load(kind, source, value))
        except (ValueError, PolicyError) as e:
            return None, str(e)
        return True, None

    def sign_message(
        kind: str, params: Any, source: str, value: str, data: str
    ) -> tuple[str | None, str | None]:
        try:
            made = signer(to_python(params), lambda: load(kind, source, value))
            return sign(from_binary(data), made), None
        except (ValueError, PolicyError) as e:
            return None, str(e)

    def arc_seal(
        kind: str, params: Any, source: str, value: str, data: str, serv_id: Any, results: Any
    ) -> tuple[Any, str | None]:
        """The ARC set (ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results)
        as (name, value) pairs, sealed over `results` (their arc= result included)."""
        try:
            made = signer(to_python(params), lambda: load(kind, source, value))
            pairs = seal(from_binary(data), made, serv_id, to_python(results))
        except (ValueError, PolicyError) as e:
            return None, str(e)
        return context.to_lua([list(p) for p in pairs]), None

    return {"check": check, "sign": sign_message, "arc_seal": arc_seal}
