import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_UNSPECIFIED: _ClassVar[Action]
    ACTION_CONTINUE: _ClassVar[Action]
    ACTION_REJECT: _ClassVar[Action]
    ACTION_DISCONNECT: _ClassVar[Action]
    ACTION_ERROR: _ClassVar[Action]

class DisconnectMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DISCONNECT_MODE_UNSPECIFIED: _ClassVar[DisconnectMode]
    DISCONNECT_MODE_IF_421: _ClassVar[DisconnectMode]
    DISCONNECT_MODE_FOLLOW_WITH_421: _ClassVar[DisconnectMode]
    DISCONNECT_MODE_FORCE_DISCONNECT: _ClassVar[DisconnectMode]

class BatchHandling(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_HANDLING_UNSPECIFIED: _ClassVar[BatchHandling]
    BATCH_HANDLING_BIFURCATE_ALWAYS: _ClassVar[BatchHandling]
    BATCH_HANDLING_BATCH_BY_DOMAIN: _ClassVar[BatchHandling]
ACTION_UNSPECIFIED: Action
ACTION_CONTINUE: Action
ACTION_REJECT: Action
ACTION_DISCONNECT: Action
ACTION_ERROR: Action
DISCONNECT_MODE_UNSPECIFIED: DisconnectMode
DISCONNECT_MODE_IF_421: DisconnectMode
DISCONNECT_MODE_FOLLOW_WITH_421: DisconnectMode
DISCONNECT_MODE_FORCE_DISCONNECT: DisconnectMode
BATCH_HANDLING_UNSPECIFIED: BatchHandling
BATCH_HANDLING_BIFURCATE_ALWAYS: BatchHandling
BATCH_HANDLING_BATCH_BY_DOMAIN: BatchHandling

class EvaluateRequest(_message.Message):
    __slots__ = ("request_id", "event", "client", "session", "conn_meta", "dry_run", "connect", "ehlo", "auth_plain", "mail_from", "rcpt_to", "message", "rewrite_response", "dynamic_parameters")
    class ConnMetaEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    CONN_META_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    CONNECT_FIELD_NUMBER: _ClassVar[int]
    EHLO_FIELD_NUMBER: _ClassVar[int]
    AUTH_PLAIN_FIELD_NUMBER: _ClassVar[int]
    MAIL_FROM_FIELD_NUMBER: _ClassVar[int]
    RCPT_TO_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REWRITE_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    DYNAMIC_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    event: str
    client: Client
    session: Session
    conn_meta: _containers.ScalarMap[str, str]
    dry_run: bool
    connect: ConnectArgs
    ehlo: EhloArgs
    auth_plain: AuthPlainArgs
    mail_from: MailFromArgs
    rcpt_to: RcptToArgs
    message: MessageArgs
    rewrite_response: RewriteResponseArgs
    dynamic_parameters: DynamicParametersArgs
    def __init__(self, request_id: _Optional[int] = ..., event: _Optional[str] = ..., client: _Optional[_Union[Client, _Mapping]] = ..., session: _Optional[_Union[Session, _Mapping]] = ..., conn_meta: _Optional[_Mapping[str, str]] = ..., dry_run: _Optional[bool] = ..., connect: _Optional[_Union[ConnectArgs, _Mapping]] = ..., ehlo: _Optional[_Union[EhloArgs, _Mapping]] = ..., auth_plain: _Optional[_Union[AuthPlainArgs, _Mapping]] = ..., mail_from: _Optional[_Union[MailFromArgs, _Mapping]] = ..., rcpt_to: _Optional[_Union[RcptToArgs, _Mapping]] = ..., message: _Optional[_Union[MessageArgs, _Mapping]] = ..., rewrite_response: _Optional[_Union[RewriteResponseArgs, _Mapping]] = ..., dynamic_parameters: _Optional[_Union[DynamicParametersArgs, _Mapping]] = ...) -> None: ...

class Client(_message.Message):
    __slots__ = ("edge_id", "hostname", "listener", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    LISTENER_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    hostname: str
    listener: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, edge_id: _Optional[str] = ..., hostname: _Optional[str] = ..., listener: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("id", "peer_ip", "peer_port", "local_ip", "local_port", "ehlo_domain", "tls", "auth")
    ID_FIELD_NUMBER: _ClassVar[int]
    PEER_IP_FIELD_NUMBER: _ClassVar[int]
    PEER_PORT_FIELD_NUMBER: _ClassVar[int]
    LOCAL_IP_FIELD_NUMBER: _ClassVar[int]
    LOCAL_PORT_FIELD_NUMBER: _ClassVar[int]
    EHLO_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    id: str
    peer_ip: str
    peer_port: int
    local_ip: str
    local_port: int
    ehlo_domain: str
    tls: TlsInfo
    auth: AuthInfo
    def __init__(self, id: _Optional[str] = ..., peer_ip: _Optional[str] = ..., peer_port: _Optional[int] = ..., local_ip: _Optional[str] = ..., local_port: _Optional[int] = ..., ehlo_domain: _Optional[str] = ..., tls: _Optional[_Union[TlsInfo, _Mapping]] = ..., auth: _Optional[_Union[AuthInfo, _Mapping]] = ...) -> None: ...

class TlsInfo(_message.Message):
    __slots__ = ("protocol_version", "cipher", "peer_subject_name")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CIPHER_FIELD_NUMBER: _ClassVar[int]
    PEER_SUBJECT_NAME_FIELD_NUMBER: _ClassVar[int]
    protocol_version: str
    cipher: str
    peer_subject_name: str
    def __init__(self, protocol_version: _Optional[str] = ..., cipher: _Optional[str] = ..., peer_subject_name: _Optional[str] = ...) -> None: ...

class AuthInfo(_message.Message):
    __slots__ = ("authn_id", "authz_id", "identities", "groups")
    AUTHN_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHZ_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    authn_id: str
    authz_id: str
    identities: _containers.RepeatedCompositeFieldContainer[Identity]
    groups: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, authn_id: _Optional[str] = ..., authz_id: _Optional[str] = ..., identities: _Optional[_Iterable[_Union[Identity, _Mapping]]] = ..., groups: _Optional[_Iterable[str]] = ...) -> None: ...

class Identity(_message.Message):
    __slots__ = ("identity", "context")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    identity: str
    context: str
    def __init__(self, identity: _Optional[str] = ..., context: _Optional[str] = ...) -> None: ...

class ConnectArgs(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EhloArgs(_message.Message):
    __slots__ = ("domain", "helo", "extensions")
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    HELO_FIELD_NUMBER: _ClassVar[int]
    EXTENSIONS_FIELD_NUMBER: _ClassVar[int]
    domain: str
    helo: bool
    extensions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, domain: _Optional[str] = ..., helo: _Optional[bool] = ..., extensions: _Optional[_Iterable[str]] = ...) -> None: ...

class AuthPlainArgs(_message.Message):
    __slots__ = ("authz", "authc", "password")
    AUTHZ_FIELD_NUMBER: _ClassVar[int]
    AUTHC_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    authz: str
    authc: str
    password: str
    def __init__(self, authz: _Optional[str] = ..., authc: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class MailFromArgs(_message.Message):
    __slots__ = ("sender", "params")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    sender: str
    params: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sender: _Optional[str] = ..., params: _Optional[_Iterable[str]] = ...) -> None: ...

class RcptToArgs(_message.Message):
    __slots__ = ("recipient", "params", "sender")
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    recipient: str
    params: _containers.RepeatedScalarFieldContainer[str]
    sender: str
    def __init__(self, recipient: _Optional[str] = ..., params: _Optional[_Iterable[str]] = ..., sender: _Optional[str] = ...) -> None: ...

class DynamicParametersArgs(_message.Message):
    __slots__ = ("listener",)
    LISTENER_FIELD_NUMBER: _ClassVar[int]
    listener: str
    def __init__(self, listener: _Optional[str] = ...) -> None: ...

class RewriteResponseArgs(_message.Message):
    __slots__ = ("status", "response", "command")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    status: int
    response: str
    command: str
    def __init__(self, status: _Optional[int] = ..., response: _Optional[str] = ..., command: _Optional[str] = ...) -> None: ...

class MessageArgs(_message.Message):
    __slots__ = ("message_id", "sender", "recipients", "data", "msg_meta")
    class MsgMetaEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    MSG_META_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    sender: str
    recipients: _containers.RepeatedScalarFieldContainer[str]
    data: bytes
    msg_meta: _containers.ScalarMap[str, str]
    def __init__(self, message_id: _Optional[str] = ..., sender: _Optional[str] = ..., recipients: _Optional[_Iterable[str]] = ..., data: _Optional[bytes] = ..., msg_meta: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Verdict(_message.Message):
    __slots__ = ("request_id", "action", "code", "text", "mode", "meta_set", "header_changes", "ehlo_extensions", "msg_meta_set", "auth_granted", "revision", "decision_id", "error", "dry_run", "data", "batches", "auth_info", "envelope", "response", "listener")
    class MetaSetEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class MsgMetaSetEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    META_SET_FIELD_NUMBER: _ClassVar[int]
    HEADER_CHANGES_FIELD_NUMBER: _ClassVar[int]
    EHLO_EXTENSIONS_FIELD_NUMBER: _ClassVar[int]
    MSG_META_SET_FIELD_NUMBER: _ClassVar[int]
    AUTH_GRANTED_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    AUTH_INFO_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    LISTENER_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    action: Action
    code: int
    text: str
    mode: DisconnectMode
    meta_set: _containers.ScalarMap[str, str]
    header_changes: _containers.RepeatedCompositeFieldContainer[HeaderChange]
    ehlo_extensions: Extensions
    msg_meta_set: _containers.ScalarMap[str, str]
    auth_granted: bool
    revision: str
    decision_id: str
    error: str
    dry_run: bool
    data: bytes
    batches: Batches
    auth_info: AuthInfo
    envelope: Envelope
    response: Response
    listener: Listener
    def __init__(self, request_id: _Optional[int] = ..., action: _Optional[_Union[Action, str]] = ..., code: _Optional[int] = ..., text: _Optional[str] = ..., mode: _Optional[_Union[DisconnectMode, str]] = ..., meta_set: _Optional[_Mapping[str, str]] = ..., header_changes: _Optional[_Iterable[_Union[HeaderChange, _Mapping]]] = ..., ehlo_extensions: _Optional[_Union[Extensions, _Mapping]] = ..., msg_meta_set: _Optional[_Mapping[str, str]] = ..., auth_granted: _Optional[bool] = ..., revision: _Optional[str] = ..., decision_id: _Optional[str] = ..., error: _Optional[str] = ..., dry_run: _Optional[bool] = ..., data: _Optional[bytes] = ..., batches: _Optional[_Union[Batches, _Mapping]] = ..., auth_info: _Optional[_Union[AuthInfo, _Mapping]] = ..., envelope: _Optional[_Union[Envelope, _Mapping]] = ..., response: _Optional[_Union[Response, _Mapping]] = ..., listener: _Optional[_Union[Listener, _Mapping]] = ...) -> None: ...

class Response(_message.Message):
    __slots__ = ("status", "text")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    status: int
    text: str
    def __init__(self, status: _Optional[int] = ..., text: _Optional[str] = ...) -> None: ...

class Envelope(_message.Message):
    __slots__ = ("sender", "recipients")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    sender: str
    recipients: Recipients
    def __init__(self, sender: _Optional[str] = ..., recipients: _Optional[_Union[Recipients, _Mapping]] = ...) -> None: ...

class Recipients(_message.Message):
    __slots__ = ("addresses",)
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    addresses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, addresses: _Optional[_Iterable[str]] = ...) -> None: ...

class Batches(_message.Message):
    __slots__ = ("batches",)
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    batches: _containers.RepeatedCompositeFieldContainer[Batch]
    def __init__(self, batches: _Optional[_Iterable[_Union[Batch, _Mapping]]] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("recipients",)
    RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    recipients: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, recipients: _Optional[_Iterable[str]] = ...) -> None: ...

class HeaderChange(_message.Message):
    __slots__ = ("op", "name", "value")
    class Op(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OP_UNSPECIFIED: _ClassVar[HeaderChange.Op]
        OP_PREPEND: _ClassVar[HeaderChange.Op]
        OP_APPEND: _ClassVar[HeaderChange.Op]
        OP_REMOVE: _ClassVar[HeaderChange.Op]
    OP_UNSPECIFIED: HeaderChange.Op
    OP_PREPEND: HeaderChange.Op
    OP_APPEND: HeaderChange.Op
    OP_REMOVE: HeaderChange.Op
    OP_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    op: HeaderChange.Op
    name: str
    value: str
    def __init__(self, op: _Optional[_Union[HeaderChange.Op, str]] = ..., name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class Extensions(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, items: _Optional[_Iterable[str]] = ...) -> None: ...

class RequestBatch(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[EvaluateRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[EvaluateRequest, _Mapping]]] = ...) -> None: ...

class ReplyBatch(_message.Message):
    __slots__ = ("verdicts", "policy", "errors")
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    verdicts: _containers.RepeatedCompositeFieldContainer[Verdict]
    policy: PolicyInfo
    errors: _containers.RepeatedCompositeFieldContainer[RequestError]
    def __init__(self, verdicts: _Optional[_Iterable[_Union[Verdict, _Mapping]]] = ..., policy: _Optional[_Union[PolicyInfo, _Mapping]] = ..., errors: _Optional[_Iterable[_Union[RequestError, _Mapping]]] = ...) -> None: ...

class PolicyInfo(_message.Message):
    __slots__ = ("revision", "handled_events", "listeners")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    HANDLED_EVENTS_FIELD_NUMBER: _ClassVar[int]
    LISTENERS_FIELD_NUMBER: _ClassVar[int]
    revision: str
    handled_events: _containers.RepeatedScalarFieldContainer[str]
    listeners: _containers.RepeatedCompositeFieldContainer[Listener]
    def __init__(self, revision: _Optional[str] = ..., handled_events: _Optional[_Iterable[str]] = ..., listeners: _Optional[_Iterable[_Union[Listener, _Mapping]]] = ...) -> None: ...

class Listener(_message.Message):
    __slots__ = ("listen", "hostname", "banner", "max_message_size", "max_recipients_per_message", "max_messages_per_connection", "batch_handling", "received_header")
    LISTEN_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    BANNER_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_RECIPIENTS_PER_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGES_PER_CONNECTION_FIELD_NUMBER: _ClassVar[int]
    BATCH_HANDLING_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_HEADER_FIELD_NUMBER: _ClassVar[int]
    listen: str
    hostname: str
    banner: str
    max_message_size: int
    max_recipients_per_message: int
    max_messages_per_connection: int
    batch_handling: BatchHandling
    received_header: bool
    def __init__(self, listen: _Optional[str] = ..., hostname: _Optional[str] = ..., banner: _Optional[str] = ..., max_message_size: _Optional[int] = ..., max_recipients_per_message: _Optional[int] = ..., max_messages_per_connection: _Optional[int] = ..., batch_handling: _Optional[_Union[BatchHandling, str]] = ..., received_header: _Optional[bool] = ...) -> None: ...

class RequestError(_message.Message):
    __slots__ = ("request_id", "message")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    message: str
    def __init__(self, request_id: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("active", "last_failure", "activations", "failures", "source")
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    LAST_FAILURE_FIELD_NUMBER: _ClassVar[int]
    ACTIVATIONS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    active: Revision
    last_failure: ReloadFailure
    activations: int
    failures: int
    source: str
    def __init__(self, active: _Optional[_Union[Revision, _Mapping]] = ..., last_failure: _Optional[_Union[ReloadFailure, _Mapping]] = ..., activations: _Optional[int] = ..., failures: _Optional[int] = ..., source: _Optional[str] = ...) -> None: ...

class Revision(_message.Message):
    __slots__ = ("id", "activated_at", "trigger", "files", "handlers", "test_files", "test_cases")
    ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVATED_AT_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    HANDLERS_FIELD_NUMBER: _ClassVar[int]
    TEST_FILES_FIELD_NUMBER: _ClassVar[int]
    TEST_CASES_FIELD_NUMBER: _ClassVar[int]
    id: str
    activated_at: _timestamp_pb2.Timestamp
    trigger: str
    files: _containers.RepeatedScalarFieldContainer[str]
    handlers: _containers.RepeatedScalarFieldContainer[str]
    test_files: _containers.RepeatedScalarFieldContainer[str]
    test_cases: int
    def __init__(self, id: _Optional[str] = ..., activated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trigger: _Optional[str] = ..., files: _Optional[_Iterable[str]] = ..., handlers: _Optional[_Iterable[str]] = ..., test_files: _Optional[_Iterable[str]] = ..., test_cases: _Optional[int] = ...) -> None: ...

class ReloadFailure(_message.Message):
    __slots__ = ("at", "trigger", "error")
    AT_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    trigger: str
    error: str
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trigger: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class ReloadRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadResponse(_message.Message):
    __slots__ = ("outcome", "revision", "error")
    class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OUTCOME_UNSPECIFIED: _ClassVar[ReloadResponse.Outcome]
        OUTCOME_ACTIVATED: _ClassVar[ReloadResponse.Outcome]
        OUTCOME_UNCHANGED: _ClassVar[ReloadResponse.Outcome]
        OUTCOME_FAILED: _ClassVar[ReloadResponse.Outcome]
    OUTCOME_UNSPECIFIED: ReloadResponse.Outcome
    OUTCOME_ACTIVATED: ReloadResponse.Outcome
    OUTCOME_UNCHANGED: ReloadResponse.Outcome
    OUTCOME_FAILED: ReloadResponse.Outcome
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    outcome: ReloadResponse.Outcome
    revision: str
    error: str
    def __init__(self, outcome: _Optional[_Union[ReloadResponse.Outcome, str]] = ..., revision: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...
