"""The sans-IO core: everything about the PubSub protocol that needs no Trio, no Kafka and no socket.

The h11 way: events (``_events``), one codec for both ends (``_codec``), the
encode-once record entries and a partition's window (``_entries``,
``_window``), ordering lanes (``_lanes``) and one connection's state
(``_connection``). The layers above import from here; nothing here imports them.
"""

from ._codec import ECHOED_TOPIC_CHARS as ECHOED_TOPIC_CHARS
from ._codec import MAX_TOPIC_LENGTH as MAX_TOPIC_LENGTH
from ._codec import RecordTooLarge as RecordTooLarge
from ._codec import decode_record as decode_record
from ._codec import decode_request as decode_request
from ._codec import decode_response as decode_response
from ._codec import encode_error as encode_error
from ._codec import encode_fetch as encode_fetch
from ._codec import encode_fetch_request as encode_fetch_request
from ._codec import encode_list_offset as encode_list_offset
from ._codec import encode_list_offset_request as encode_list_offset_request
from ._codec import encode_ping_request as encode_ping_request
from ._codec import encode_pong as encode_pong
from ._codec import topic_name_problem as topic_name_problem
from ._connection import Command as Command
from ._connection import Frame as Frame
from ._connection import Reply as Reply
from ._connection import Result as Result
from ._connection import ServerConnection as ServerConnection
from ._connection import command_of as command_of
from ._connection import fetch_frame as fetch_frame
from ._entries import EMPTY_BATCH as EMPTY_BATCH
from ._entries import FETCH_FRAME_OVERHEAD as FETCH_FRAME_OVERHEAD
from ._entries import EncodedBatch as EncodedBatch
from ._entries import Entries as Entries
from ._entries import encode_fetch_head as encode_fetch_head
from ._entries import encode_message_entry as encode_message_entry
from ._entries import record_too_large as record_too_large
from ._entries import varint as varint
from ._errors import CONNECTION_FAILURES as CONNECTION_FAILURES
from ._errors import NOT_FOUND_PARTITION as NOT_FOUND_PARTITION
from ._errors import NOT_FOUND_TOPIC as NOT_FOUND_TOPIC
from ._errors import UNKNOWN_COMMAND_MESSAGE as UNKNOWN_COMMAND_MESSAGE
from ._errors import WRONG_COMMAND_MESSAGE as WRONG_COMMAND_MESSAGE
from ._errors import CommandFailed as CommandFailed
from ._errors import ErrorCode as ErrorCode
from ._errors import fetch_error as fetch_error
from ._errors import list_offset_error as list_offset_error
from ._errors import partition_not_found as partition_not_found
from ._errors import topic_not_found as topic_not_found
from ._events import ErrorAnswer as ErrorAnswer
from ._events import Fetch as Fetch
from ._events import FetchAnswer as FetchAnswer
from ._events import Invalid as Invalid
from ._events import KafkaCommand as KafkaCommand
from ._events import ListOffset as ListOffset
from ._events import Malformed as Malformed
from ._events import MalformedResponse as MalformedResponse
from ._events import OffsetAnswer as OffsetAnswer
from ._events import Ping as Ping
from ._events import Pong as Pong
from ._events import Record as Record
from ._events import Request as Request
from ._events import Response as Response
from ._events import UnknownCommand as UnknownCommand
from ._events import UnknownResponse as UnknownResponse
from ._lanes import Key as Key
from ._lanes import Lanes as Lanes
from ._lanes import Ticket as Ticket
from ._window import READ_AHEAD_GUARD as READ_AHEAD_GUARD
from ._window import Window as Window
from ._window import WindowLimits as WindowLimits
