"""The Kafka edge: partition readers shared by sessions, through thread-disciplined kafka-python consumers.

One module per concern: ``_settings`` (kafka-python settings, TLS),
``_diagnosis`` (naming why Kafka cannot be used), ``_outages`` (logging
outages once per cause), ``_context`` (what the parts share), ``_client``
(one thread at a time, deadlines, the kill switch), ``_batches`` and
``_fast_records`` (record batches decoded straight into fetch entries, inside
kafka-python's fetcher), ``_metadata`` (the topic map), ``_reader`` (one partition: window, shared polls, read-ahead),
``_hub`` (fanning one read out to the sessions parked at the log end),
``_group`` (consumer group members, one per group stream),
``_upstream`` (the route's registry and its bounds) and ``_identities``
(an upstream per principal's own Kafka login, ``kafka_credentials``). It depends on
``_ports`` and ``_proto``, never on the session.
"""

from ._client import CLOSE_TIMEOUT as CLOSE_TIMEOUT
from ._client import KILL_SWITCH_MARGIN as KILL_SWITCH_MARGIN
from ._client import ConsumerLike as ConsumerLike
from ._client import ThreadedConsumer as ThreadedConsumer
from ._context import Counters as Counters
from ._context import KafkaContext as KafkaContext
from ._group import MemberSlots as MemberSlots
from ._identities import IdentityPool as IdentityPool
from ._outages import OutageLog as OutageLog
from ._reader import PartitionReader as PartitionReader
from ._settings import MAX_POLL_RECORDS as MAX_POLL_RECORDS
from ._settings import consumer_config as consumer_config
from ._upstream import KafkaUpstream as KafkaUpstream
from ._upstream import UpstreamStatistics as UpstreamStatistics
