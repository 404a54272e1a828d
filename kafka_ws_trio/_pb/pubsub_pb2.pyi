from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StartEdge(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LATEST: _ClassVar[StartEdge]
    EARLIEST: _ClassVar[StartEdge]

class Isolation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    READ_UNCOMMITTED: _ClassVar[Isolation]
    READ_COMMITTED: _ClassVar[Isolation]

class Acks(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACKS_ROUTE_DEFAULT: _ClassVar[Acks]
    ACKS_NONE: _ClassVar[Acks]
    ACKS_LEADER: _ClassVar[Acks]
    ACKS_ALL: _ClassVar[Acks]

class TxnAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TXN_ACTION_UNSPECIFIED: _ClassVar[TxnAction]
    TXN_BEGIN: _ClassVar[TxnAction]
    TXN_COMMIT: _ClassVar[TxnAction]
    TXN_ABORT: _ClassVar[TxnAction]
LATEST: StartEdge
EARLIEST: StartEdge
READ_UNCOMMITTED: Isolation
READ_COMMITTED: Isolation
ACKS_ROUTE_DEFAULT: Acks
ACKS_NONE: Acks
ACKS_LEADER: Acks
ACKS_ALL: Acks
TXN_ACTION_UNSPECIFIED: TxnAction
TXN_BEGIN: TxnAction
TXN_COMMIT: TxnAction
TXN_ABORT: TxnAction

class CmdPing(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: bytes
    def __init__(self, state: _Optional[bytes] = ...) -> None: ...

class CmdEmpty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CmdKafkaListOffset(_message.Message):
    __slots__ = ("topic", "partition", "timestamp")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    timestamp: int
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ..., timestamp: _Optional[int] = ...) -> None: ...

class CmdKafkaFetch(_message.Message):
    __slots__ = ("topic", "partition", "offset")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    offset: int
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class PartitionOffset(_message.Message):
    __slots__ = ("partition", "offset")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    partition: int
    offset: int
    def __init__(self, partition: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class OffsetList(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[PartitionOffset]
    def __init__(self, entries: _Optional[_Iterable[_Union[PartitionOffset, _Mapping]]] = ...) -> None: ...

class Credit(_message.Message):
    __slots__ = ("records", "bytes")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    records: int
    bytes: int
    def __init__(self, records: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class HeaderMatch(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("key_equals", "key_prefix", "headers")
    KEY_EQUALS_FIELD_NUMBER: _ClassVar[int]
    KEY_PREFIX_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    key_equals: _containers.RepeatedScalarFieldContainer[bytes]
    key_prefix: bytes
    headers: _containers.RepeatedCompositeFieldContainer[HeaderMatch]
    def __init__(self, key_equals: _Optional[_Iterable[bytes]] = ..., key_prefix: _Optional[bytes] = ..., headers: _Optional[_Iterable[_Union[HeaderMatch, _Mapping]]] = ...) -> None: ...

class CmdSubscribe(_message.Message):
    __slots__ = ("topic", "partitions", "edge", "timestamp", "offsets", "filter", "credit", "isolation", "group", "auto_commit")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    EDGE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    ISOLATION_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    AUTO_COMMIT_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partitions: _containers.RepeatedScalarFieldContainer[int]
    edge: StartEdge
    timestamp: int
    offsets: OffsetList
    filter: Filter
    credit: Credit
    isolation: Isolation
    group: str
    auto_commit: bool
    def __init__(self, topic: _Optional[str] = ..., partitions: _Optional[_Iterable[int]] = ..., edge: _Optional[_Union[StartEdge, str]] = ..., timestamp: _Optional[int] = ..., offsets: _Optional[_Union[OffsetList, _Mapping]] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., credit: _Optional[_Union[Credit, _Mapping]] = ..., isolation: _Optional[_Union[Isolation, str]] = ..., group: _Optional[str] = ..., auto_commit: bool = ...) -> None: ...

class CmdCredit(_message.Message):
    __slots__ = ("subscription", "credit")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    subscription: int
    credit: Credit
    def __init__(self, subscription: _Optional[int] = ..., credit: _Optional[_Union[Credit, _Mapping]] = ...) -> None: ...

class CmdUnsubscribe(_message.Message):
    __slots__ = ("subscription",)
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    subscription: int
    def __init__(self, subscription: _Optional[int] = ...) -> None: ...

class CmdSeek(_message.Message):
    __slots__ = ("subscription", "partition", "edge", "timestamp", "offset")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    EDGE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    subscription: int
    partition: int
    edge: StartEdge
    timestamp: int
    offset: int
    def __init__(self, subscription: _Optional[int] = ..., partition: _Optional[int] = ..., edge: _Optional[_Union[StartEdge, str]] = ..., timestamp: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class CmdCommit(_message.Message):
    __slots__ = ("subscription", "offsets")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    subscription: int
    offsets: OffsetList
    def __init__(self, subscription: _Optional[int] = ..., offsets: _Optional[_Union[OffsetList, _Mapping]] = ...) -> None: ...

class ProduceRecord(_message.Message):
    __slots__ = ("partition", "key", "value", "headers", "timestamp")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    partition: int
    key: bytes
    value: bytes
    headers: _containers.RepeatedCompositeFieldContainer[KafkaHeader]
    timestamp: int
    def __init__(self, partition: _Optional[int] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., headers: _Optional[_Iterable[_Union[KafkaHeader, _Mapping]]] = ..., timestamp: _Optional[int] = ...) -> None: ...

class CmdProduce(_message.Message):
    __slots__ = ("topic", "records", "acks", "transactional")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    ACKS_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONAL_FIELD_NUMBER: _ClassVar[int]
    topic: str
    records: _containers.RepeatedCompositeFieldContainer[ProduceRecord]
    acks: Acks
    transactional: bool
    def __init__(self, topic: _Optional[str] = ..., records: _Optional[_Iterable[_Union[ProduceRecord, _Mapping]]] = ..., acks: _Optional[_Union[Acks, str]] = ..., transactional: bool = ...) -> None: ...

class CmdTxn(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: TxnAction
    def __init__(self, action: _Optional[_Union[TxnAction, str]] = ...) -> None: ...

class CmdGroupOffsets(_message.Message):
    __slots__ = ("group", "topic")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    group: str
    topic: str
    def __init__(self, group: _Optional[str] = ..., topic: _Optional[str] = ...) -> None: ...

class CmdAuth(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...

class PubSubReq(_message.Message):
    __slots__ = ("sequence", "cmd_empty", "cmd_ping", "cmd_kafka_fetch", "cmd_kafka_list_offset", "cmd_subscribe", "cmd_credit", "cmd_unsubscribe", "cmd_seek", "cmd_commit", "cmd_produce", "cmd_txn", "cmd_group_offsets", "cmd_auth")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CMD_EMPTY_FIELD_NUMBER: _ClassVar[int]
    CMD_PING_FIELD_NUMBER: _ClassVar[int]
    CMD_KAFKA_FETCH_FIELD_NUMBER: _ClassVar[int]
    CMD_KAFKA_LIST_OFFSET_FIELD_NUMBER: _ClassVar[int]
    CMD_SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    CMD_CREDIT_FIELD_NUMBER: _ClassVar[int]
    CMD_UNSUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    CMD_SEEK_FIELD_NUMBER: _ClassVar[int]
    CMD_COMMIT_FIELD_NUMBER: _ClassVar[int]
    CMD_PRODUCE_FIELD_NUMBER: _ClassVar[int]
    CMD_TXN_FIELD_NUMBER: _ClassVar[int]
    CMD_GROUP_OFFSETS_FIELD_NUMBER: _ClassVar[int]
    CMD_AUTH_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    cmd_empty: CmdEmpty
    cmd_ping: CmdPing
    cmd_kafka_fetch: CmdKafkaFetch
    cmd_kafka_list_offset: CmdKafkaListOffset
    cmd_subscribe: CmdSubscribe
    cmd_credit: CmdCredit
    cmd_unsubscribe: CmdUnsubscribe
    cmd_seek: CmdSeek
    cmd_commit: CmdCommit
    cmd_produce: CmdProduce
    cmd_txn: CmdTxn
    cmd_group_offsets: CmdGroupOffsets
    cmd_auth: CmdAuth
    def __init__(self, sequence: _Optional[int] = ..., cmd_empty: _Optional[_Union[CmdEmpty, _Mapping]] = ..., cmd_ping: _Optional[_Union[CmdPing, _Mapping]] = ..., cmd_kafka_fetch: _Optional[_Union[CmdKafkaFetch, _Mapping]] = ..., cmd_kafka_list_offset: _Optional[_Union[CmdKafkaListOffset, _Mapping]] = ..., cmd_subscribe: _Optional[_Union[CmdSubscribe, _Mapping]] = ..., cmd_credit: _Optional[_Union[CmdCredit, _Mapping]] = ..., cmd_unsubscribe: _Optional[_Union[CmdUnsubscribe, _Mapping]] = ..., cmd_seek: _Optional[_Union[CmdSeek, _Mapping]] = ..., cmd_commit: _Optional[_Union[CmdCommit, _Mapping]] = ..., cmd_produce: _Optional[_Union[CmdProduce, _Mapping]] = ..., cmd_txn: _Optional[_Union[CmdTxn, _Mapping]] = ..., cmd_group_offsets: _Optional[_Union[CmdGroupOffsets, _Mapping]] = ..., cmd_auth: _Optional[_Union[CmdAuth, _Mapping]] = ...) -> None: ...

class ErrorResp(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class PongResp(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: bytes
    def __init__(self, state: _Optional[bytes] = ...) -> None: ...

class KafkaHeader(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...

class KafkaMessage(_message.Message):
    __slots__ = ("offset", "timestamp", "key", "value", "headers")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    offset: int
    timestamp: int
    key: bytes
    value: bytes
    headers: _containers.RepeatedCompositeFieldContainer[KafkaHeader]
    def __init__(self, offset: _Optional[int] = ..., timestamp: _Optional[int] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., headers: _Optional[_Iterable[_Union[KafkaHeader, _Mapping]]] = ...) -> None: ...

class KafkaFetchResp(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[KafkaMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[KafkaMessage, _Mapping]]] = ...) -> None: ...

class KafkaListOffsetResp(_message.Message):
    __slots__ = ("offset",)
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    offset: int
    def __init__(self, offset: _Optional[int] = ...) -> None: ...

class OkResp(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SubscribeResp(_message.Message):
    __slots__ = ("positions",)
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    positions: OffsetList
    def __init__(self, positions: _Optional[_Union[OffsetList, _Mapping]] = ...) -> None: ...

class StreamBatch(_message.Message):
    __slots__ = ("partition", "messages", "next_offset", "high_watermark")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    HIGH_WATERMARK_FIELD_NUMBER: _ClassVar[int]
    partition: int
    messages: _containers.RepeatedCompositeFieldContainer[KafkaMessage]
    next_offset: int
    high_watermark: int
    def __init__(self, partition: _Optional[int] = ..., messages: _Optional[_Iterable[_Union[KafkaMessage, _Mapping]]] = ..., next_offset: _Optional[int] = ..., high_watermark: _Optional[int] = ...) -> None: ...

class PartitionsChanged(_message.Message):
    __slots__ = ("assigned", "revoked", "positions")
    ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    assigned: _containers.RepeatedScalarFieldContainer[int]
    revoked: _containers.RepeatedScalarFieldContainer[int]
    positions: _containers.RepeatedCompositeFieldContainer[PartitionOffset]
    def __init__(self, assigned: _Optional[_Iterable[int]] = ..., revoked: _Optional[_Iterable[int]] = ..., positions: _Optional[_Iterable[_Union[PartitionOffset, _Mapping]]] = ...) -> None: ...

class StreamEvent(_message.Message):
    __slots__ = ("caught_up", "error", "partitions", "ended", "partition")
    CAUGHT_UP_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    caught_up: int
    error: ErrorResp
    partitions: PartitionsChanged
    ended: ErrorResp
    partition: int
    def __init__(self, caught_up: _Optional[int] = ..., error: _Optional[_Union[ErrorResp, _Mapping]] = ..., partitions: _Optional[_Union[PartitionsChanged, _Mapping]] = ..., ended: _Optional[_Union[ErrorResp, _Mapping]] = ..., partition: _Optional[int] = ...) -> None: ...

class ProduceResult(_message.Message):
    __slots__ = ("partition", "offset", "timestamp", "error")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    partition: int
    offset: int
    timestamp: int
    error: ErrorResp
    def __init__(self, partition: _Optional[int] = ..., offset: _Optional[int] = ..., timestamp: _Optional[int] = ..., error: _Optional[_Union[ErrorResp, _Mapping]] = ...) -> None: ...

class ProduceResp(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ProduceResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ProduceResult, _Mapping]]] = ...) -> None: ...

class GroupOffsetsResp(_message.Message):
    __slots__ = ("committed",)
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    committed: OffsetList
    def __init__(self, committed: _Optional[_Union[OffsetList, _Mapping]] = ...) -> None: ...

class PubSubResp(_message.Message):
    __slots__ = ("sequence", "error_resp", "pong_resp", "kafka_fetch_resp", "kafka_list_offset_resp", "subscribe_resp", "stream_batch", "stream_event", "ok_resp", "produce_resp", "group_offsets_resp")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ERROR_RESP_FIELD_NUMBER: _ClassVar[int]
    PONG_RESP_FIELD_NUMBER: _ClassVar[int]
    KAFKA_FETCH_RESP_FIELD_NUMBER: _ClassVar[int]
    KAFKA_LIST_OFFSET_RESP_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBE_RESP_FIELD_NUMBER: _ClassVar[int]
    STREAM_BATCH_FIELD_NUMBER: _ClassVar[int]
    STREAM_EVENT_FIELD_NUMBER: _ClassVar[int]
    OK_RESP_FIELD_NUMBER: _ClassVar[int]
    PRODUCE_RESP_FIELD_NUMBER: _ClassVar[int]
    GROUP_OFFSETS_RESP_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    error_resp: ErrorResp
    pong_resp: PongResp
    kafka_fetch_resp: KafkaFetchResp
    kafka_list_offset_resp: KafkaListOffsetResp
    subscribe_resp: SubscribeResp
    stream_batch: StreamBatch
    stream_event: StreamEvent
    ok_resp: OkResp
    produce_resp: ProduceResp
    group_offsets_resp: GroupOffsetsResp
    def __init__(self, sequence: _Optional[int] = ..., error_resp: _Optional[_Union[ErrorResp, _Mapping]] = ..., pong_resp: _Optional[_Union[PongResp, _Mapping]] = ..., kafka_fetch_resp: _Optional[_Union[KafkaFetchResp, _Mapping]] = ..., kafka_list_offset_resp: _Optional[_Union[KafkaListOffsetResp, _Mapping]] = ..., subscribe_resp: _Optional[_Union[SubscribeResp, _Mapping]] = ..., stream_batch: _Optional[_Union[StreamBatch, _Mapping]] = ..., stream_event: _Optional[_Union[StreamEvent, _Mapping]] = ..., ok_resp: _Optional[_Union[OkResp, _Mapping]] = ..., produce_resp: _Optional[_Union[ProduceResp, _Mapping]] = ..., group_offsets_resp: _Optional[_Union[GroupOffsetsResp, _Mapping]] = ...) -> None: ...
