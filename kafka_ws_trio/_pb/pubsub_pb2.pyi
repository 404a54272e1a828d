from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

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

class PubSubReq(_message.Message):
    __slots__ = ("sequence", "cmd_empty", "cmd_ping", "cmd_kafka_fetch", "cmd_kafka_list_offset")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CMD_EMPTY_FIELD_NUMBER: _ClassVar[int]
    CMD_PING_FIELD_NUMBER: _ClassVar[int]
    CMD_KAFKA_FETCH_FIELD_NUMBER: _ClassVar[int]
    CMD_KAFKA_LIST_OFFSET_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    cmd_empty: CmdEmpty
    cmd_ping: CmdPing
    cmd_kafka_fetch: CmdKafkaFetch
    cmd_kafka_list_offset: CmdKafkaListOffset
    def __init__(self, sequence: _Optional[int] = ..., cmd_empty: _Optional[_Union[CmdEmpty, _Mapping]] = ..., cmd_ping: _Optional[_Union[CmdPing, _Mapping]] = ..., cmd_kafka_fetch: _Optional[_Union[CmdKafkaFetch, _Mapping]] = ..., cmd_kafka_list_offset: _Optional[_Union[CmdKafkaListOffset, _Mapping]] = ...) -> None: ...

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

class PubSubResp(_message.Message):
    __slots__ = ("sequence", "error_resp", "pong_resp", "kafka_fetch_resp", "kafka_list_offset_resp")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ERROR_RESP_FIELD_NUMBER: _ClassVar[int]
    PONG_RESP_FIELD_NUMBER: _ClassVar[int]
    KAFKA_FETCH_RESP_FIELD_NUMBER: _ClassVar[int]
    KAFKA_LIST_OFFSET_RESP_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    error_resp: ErrorResp
    pong_resp: PongResp
    kafka_fetch_resp: KafkaFetchResp
    kafka_list_offset_resp: KafkaListOffsetResp
    def __init__(self, sequence: _Optional[int] = ..., error_resp: _Optional[_Union[ErrorResp, _Mapping]] = ..., pong_resp: _Optional[_Union[PongResp, _Mapping]] = ..., kafka_fetch_resp: _Optional[_Union[KafkaFetchResp, _Mapping]] = ..., kafka_list_offset_resp: _Optional[_Union[KafkaListOffsetResp, _Mapping]] = ...) -> None: ...
