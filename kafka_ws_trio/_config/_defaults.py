"""The configuration's named defaults and bounds: every number a config may leave out, in one place.

The classes in ``_model`` take their defaults from here, ``examples/proxy.toml``
shows the same values, and the session and the bench read some of them
directly, so a default changes in this one module.
"""

from __future__ import annotations

from typing import Final

# [server]
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 9080
#: Bytes. The largest response the proxy sends and the largest frame it accepts.
DEFAULT_MAX_MESSAGE_SIZE: Final = 1_048_576
#: Below this a fetch response could not hold a single ordinary record.
MIN_MAX_MESSAGE_SIZE: Final = 1024
#: Seconds that open sessions get to finish when the server shuts down.
DEFAULT_GRACE_PERIOD: Final = 10.0
#: Commands read from one WebSocket but not yet being handled.
DEFAULT_QUEUE_SIZE: Final = 64
#: Commands one session handles at the same time.
DEFAULT_WORKERS: Final = 8
#: Threads doing Kafka work, shared by all sessions (one CapacityLimiter).
DEFAULT_KAFKA_THREADS: Final = 32
#: Seconds a client may leave a response unread before its connection is closed.
DEFAULT_SEND_TIMEOUT: Final = 30.0
#: Seconds a client has to finish its TLS and WebSocket handshakes.
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0
#: The ops listener (/metrics, /healthz, /readyz): loopback unless told otherwise; no port: not served.
DEFAULT_OPS_HOST: Final = "127.0.0.1"
#: Seconds between the checks that each route's brokers answer (what /readyz reports).
DEFAULT_READY_CHECK_INTERVAL: Final = 5.0
#: Connections in their handshake at once, all together and from one IP address.
DEFAULT_MAX_HANDSHAKES: Final = 1024
DEFAULT_MAX_HANDSHAKES_PER_IP: Final = 256
#: Open WebSocket sessions, all routes together.
DEFAULT_MAX_SESSIONS: Final = 10_000
DEFAULT_LOG_LEVEL: Final = "INFO"
LOG_LEVELS: Final = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
#: How log lines look: "text" for people, "json" (one object a line) for a log pipeline.
DEFAULT_LOG_FORMAT: Final = "text"
LOG_FORMATS: Final = ("text", "json")

# [[routes]]
#: The path :meth:`ProxyConfig.single_route` serves; TOML routes must name theirs.
DEFAULT_URI: Final = "/kafka"
#: Seconds. The deadline of every Kafka call, so also how long an unreachable
#: broker takes to be reported.
DEFAULT_REQUEST_TIMEOUT: Final = 5.0
#: Seconds a fetch at the log end waits for new records (APISIX: about 0.1).
DEFAULT_FETCH_MAX_WAIT: Final = 0.1
#: Bytes one Kafka fetch may return.
DEFAULT_FETCH_MAX_BYTES: Final = 1_048_576
#: Seconds after which an unused partition reader is closed.
DEFAULT_IDLE_TIMEOUT: Final = 60.0
#: Records kept per partition for readers that ask again.
DEFAULT_CACHE_RECORDS: Final = 10_000
#: Bytes of encoded records kept per partition (the window), besides ``cache_records``.
DEFAULT_CACHE_BYTES: Final = 16 * 1024 * 1024
#: Bytes of joined response bodies kept per partition for sessions asking the same thing.
DEFAULT_SHARED_BODY_BYTES: Final = 4 * 1024 * 1024
#: Partition readers (one Kafka consumer each) a route may have open at once.
DEFAULT_MAX_PARTITION_READERS: Final = 128
#: Push streams one WebSocket session may have open at once.
DEFAULT_MAX_STREAMS: Final = 64
#: Partitions one push stream may cover.
DEFAULT_MAX_STREAM_PARTITIONS: Final = 1024
#: Record credit a stream gets when its CmdSubscribe carries none.
DEFAULT_STREAM_CREDIT_RECORDS: Final = 1000
#: Byte credit a stream gets when its CmdSubscribe carries none (0: no byte credit, so no byte limit).
DEFAULT_STREAM_CREDIT_BYTES: Final = 0
#: What Fetch and ListOffset commands see: "read_uncommitted" (APISIX's view) or "read_committed".
DEFAULT_FETCH_ISOLATION: Final = "read_uncommitted"
FETCH_ISOLATIONS: Final = ("read_uncommitted", "read_committed")
#: Whether the route takes CmdProduce and CmdTxn.
DEFAULT_PRODUCE: Final = True
#: The acks of a CmdProduce that names none: "all" (idempotent), "leader" or "none".
DEFAULT_PRODUCE_ACKS: Final = "all"
PRODUCE_ACKS: Final = ("all", "leader", "none")
#: Seconds the route's producer waits for more records before it sends a batch (Kafka 4's linger.ms).
DEFAULT_PRODUCE_LINGER: Final = 0.005
#: Bytes of one partition's batch in the route's producer (kafka-python's batch_size).
DEFAULT_PRODUCE_BATCH_BYTES: Final = 65_536
#: Bytes of one produced record as the producer encodes it; larger records get RECORD_TOO_LARGE.
DEFAULT_PRODUCE_MAX_RECORD_BYTES: Final = 1_048_576
#: Records and bytes (keys, values, headers) one session may have sent to Kafka and not yet acknowledged.
DEFAULT_PRODUCE_SESSION_RECORDS: Final = 10_000
DEFAULT_PRODUCE_SESSION_BYTES: Final = 4 * 1024 * 1024
#: The same for all the route's sessions together: the most the producers buffer.
DEFAULT_PRODUCE_ROUTE_RECORDS: Final = 100_000
DEFAULT_PRODUCE_ROUTE_BYTES: Final = 64 * 1024 * 1024
#: Transactional producers the route keeps: at most this many transactions open at once.
DEFAULT_TRANSACTION_PRODUCERS: Final = 8
#: Seconds a transaction may stay open before the proxy aborts it.
DEFAULT_TRANSACTION_TIMEOUT: Final = 60.0
#: Whether a subscribe may join a consumer group on the route.
DEFAULT_GROUPS: Final = True
#: Group members (one kafka-python consumer each) the route holds at once.
DEFAULT_ROUTE_GROUP_MEMBERS: Final = 64
#: Group members the whole proxy holds at once, all routes together.
DEFAULT_MAX_GROUP_MEMBERS: Final = 256
#: Seconds Kafka waits without a heartbeat before it drops a member (a proxy killed, a network cut).
DEFAULT_GROUP_SESSION_TIMEOUT: Final = 10.0
#: Seconds between a member's heartbeats: how soon a member learns that its group rebalances.
DEFAULT_GROUP_HEARTBEAT_INTERVAL: Final = 1.0
#: Seconds between the commits of an ``auto_commit`` stream.
DEFAULT_GROUP_COMMIT_INTERVAL: Final = 5.0
DEFAULT_CLIENT_ID: Final = "kafka-ws-trio"
#: Like APISIX: TLS to Kafka encrypts, but checks the broker only when asked to.
DEFAULT_TLS_VERIFY: Final = False
#: Like APISIX, whose kafka-proxy plugin knows no other.
DEFAULT_SASL_MECHANISM: Final = "PLAIN"
SASL_MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

#: Upper bound of every count and size: Kafka and protobuf sizes are int32.
MAX_INT32: Final = 2**31 - 1
#: Upper bound of every duration, in seconds (one day).
MAX_SECONDS: Final = 86_400.0

# A route's access control (issue 13)
#: How clients prove who they are: "none" (anyone, as the principal "anonymous"), "api_key", "jwt".
AUTH_METHODS: Final = ("none", "api_key", "jwt")
DEFAULT_AUTH: Final = ("none",)
#: The principal of a session on a route that takes "none" and got no credential.
ANONYMOUS: Final = "anonymous"
#: JWT algorithms by family; a route takes one family only (an RSA public key must never pass as an HMAC secret).
JWT_HMAC_ALGORITHMS: Final = ("HS256", "HS384", "HS512")
JWT_PUBLIC_KEY_ALGORITHMS: Final = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)  # fmt: skip
#: Seconds of clock difference allowed on a token's exp and nbf.
DEFAULT_JWT_LEEWAY: Final = 30.0
DEFAULT_JWT_PRINCIPAL_CLAIM: Final = "sub"
#: Claims whose values ACL rules may match as ``claim:<name>=<value>`` (OAuth scopes and roles).
DEFAULT_JWT_RIGHTS_CLAIMS: Final = ("scope", "scp", "roles")
ACL_OPERATIONS: Final = ("read", "write", "group")
#: Seconds of a quota's rate a principal may spend at once (its bucket's size).
DEFAULT_QUOTA_BURST_SECONDS: Final = 1.0
#: Principals whose quota buckets are remembered per route; the least recently seen is forgotten past it.
DEFAULT_QUOTA_PRINCIPALS: Final = 10_000
#: What a principal with no Kafka login of its own gets on a route that maps principals to logins:
#: "refuse" (403 at the handshake) or "route" (the route's own connection to Kafka).
KAFKA_UNMAPPED: Final = ("refuse", "route")
DEFAULT_KAFKA_UNMAPPED: Final = "refuse"
#: Kafka logins with Kafka clients of their own at once on one route (each its own readers and producers).
DEFAULT_KAFKA_IDENTITIES: Final = 16
