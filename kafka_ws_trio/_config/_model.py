"""The configuration's classes: frozen attrs classes that check themselves when built.

A config built in code (for embedding, or in tests) gets the same checks as
one read from a file. Besides checking each value (``_checks``), the classes
check what needs several values at once: TLS files that load together, a fetch
wait shorter than the request deadline, one route per uri. Those checks are
functions of the values (``_tls_problems``, ``_route_problems``) so that the
TOML reader can run them on the values of a table that are fine on their own
while others in it are not, and leave out a check whose values are already
reported wrong: its problem would only follow from that one.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final, Literal

import attrs

from ._access import (
    AclRuleConfig,
    ApiKeyConfig,
    JwtConfig,
    KafkaCredentialsConfig,
    QuotaConfig,
    _check_origins,
    _instances_of,
    _strings,
    _to_tuple,
    check_key_ids,
)
from ._checks import (
    _boolean,
    _check_nodes,
    _check_secret,
    _check_uri,
    _choice,
    _instance_of,
    _integer,
    _readable_file,
    _seconds,
    _string,
    _to_nodes,
    _to_optional_secret,
    _to_secret,
)
from ._defaults import (
    AUTH_METHODS,
    DEFAULT_AUTH,
    DEFAULT_CACHE_BYTES,
    DEFAULT_CACHE_RECORDS,
    DEFAULT_CLIENT_ID,
    DEFAULT_FETCH_ISOLATION,
    DEFAULT_FETCH_MAX_BYTES,
    DEFAULT_FETCH_MAX_WAIT,
    DEFAULT_GRACE_PERIOD,
    DEFAULT_GROUP_COMMIT_INTERVAL,
    DEFAULT_GROUP_HEARTBEAT_INTERVAL,
    DEFAULT_GROUP_SESSION_TIMEOUT,
    DEFAULT_GROUPS,
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_HOST,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_KAFKA_THREADS,
    DEFAULT_LOG_FORMAT,
    DEFAULT_LOG_LEVEL,
    DEFAULT_MAX_GROUP_MEMBERS,
    DEFAULT_MAX_HANDSHAKES,
    DEFAULT_MAX_HANDSHAKES_PER_IP,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_PARTITION_READERS,
    DEFAULT_MAX_SESSIONS,
    DEFAULT_MAX_STREAM_PARTITIONS,
    DEFAULT_MAX_STREAMS,
    DEFAULT_OPS_HOST,
    DEFAULT_PORT,
    DEFAULT_PRODUCE,
    DEFAULT_PRODUCE_ACKS,
    DEFAULT_PRODUCE_BATCH_BYTES,
    DEFAULT_PRODUCE_LINGER,
    DEFAULT_PRODUCE_MAX_RECORD_BYTES,
    DEFAULT_PRODUCE_ROUTE_BYTES,
    DEFAULT_PRODUCE_ROUTE_RECORDS,
    DEFAULT_PRODUCE_SESSION_BYTES,
    DEFAULT_PRODUCE_SESSION_RECORDS,
    DEFAULT_QUEUE_SIZE,
    DEFAULT_READY_CHECK_INTERVAL,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_ROUTE_GROUP_MEMBERS,
    DEFAULT_SASL_MECHANISM,
    DEFAULT_SEND_TIMEOUT,
    DEFAULT_SHARED_BODY_BYTES,
    DEFAULT_STREAM_CREDIT_BYTES,
    DEFAULT_STREAM_CREDIT_RECORDS,
    DEFAULT_TLS_VERIFY,
    DEFAULT_TRANSACTION_PRODUCERS,
    DEFAULT_TRANSACTION_TIMEOUT,
    DEFAULT_URI,
    DEFAULT_WORKERS,
    FETCH_ISOLATIONS,
    LOG_FORMATS,
    LOG_LEVELS,
    MIN_MAX_MESSAGE_SIZE,
    PRODUCE_ACKS,
    SASL_MECHANISMS,
)
from ._errors import ConfigError, ConfigProblem, _kind, _quote, _raise_all
from ._secret import Secret

_NO_ROUTES: Final = 'no routes; add at least one [[routes]] table with a uri and nodes, e.g. uri = "/kafka"'


@attrs.frozen(kw_only=True)
class ServerConfig:
    """The ``[server]`` table: where the proxy listens and its global limits.

    In the worst case one session holds ``queue_size`` received frames and
    ``workers`` responses, each at most ``max_message_size`` bytes.

    With ``tls_cert_file`` and ``tls_key_file`` (both or neither) the
    listener speaks TLS and clients connect with ``wss://``. They must be
    readable PEM that load together when the object is built: the server's
    certificate (followed by any intermediate certificates) and its private
    key, decrypted with ``tls_key_password`` when encrypted. Paths are used
    as given; the TOML reader makes them absolute.
    """

    host: str = attrs.field(default=DEFAULT_HOST, validator=_string(spaces=False))
    port: int = attrs.field(default=DEFAULT_PORT, validator=_integer(0, 65535, " (0 picks a free port)"))
    max_message_size: int = attrs.field(
        default=DEFAULT_MAX_MESSAGE_SIZE, validator=_integer(MIN_MAX_MESSAGE_SIZE, note=" bytes")
    )
    grace_period: float = attrs.field(default=DEFAULT_GRACE_PERIOD, validator=_seconds(0, inclusive=True))
    queue_size: int = attrs.field(default=DEFAULT_QUEUE_SIZE, validator=_integer(1))
    workers: int = attrs.field(default=DEFAULT_WORKERS, validator=_integer(1))
    kafka_threads: int = attrs.field(default=DEFAULT_KAFKA_THREADS, validator=_integer(1))
    send_timeout: float = attrs.field(default=DEFAULT_SEND_TIMEOUT, validator=_seconds(0, inclusive=False))
    max_sessions: int = attrs.field(default=DEFAULT_MAX_SESSIONS, validator=_integer(1))
    max_group_members: int = attrs.field(default=DEFAULT_MAX_GROUP_MEMBERS, validator=_integer(1))
    log_level: str = attrs.field(default=DEFAULT_LOG_LEVEL, validator=_choice(LOG_LEVELS))
    #: "text" (what people read) or "json": one JSON object a line, for a log pipeline.
    log_format: str = attrs.field(default=DEFAULT_LOG_FORMAT, validator=_choice(LOG_FORMATS))
    #: Seconds a client has to finish its TLS and WebSocket handshakes (slowloris).
    handshake_timeout: float = attrs.field(default=DEFAULT_HANDSHAKE_TIMEOUT, validator=_seconds(0, inclusive=False))
    #: Connections still in their handshake, all together and from one IP address; more are refused at once.
    max_handshakes: int = attrs.field(default=DEFAULT_MAX_HANDSHAKES, validator=_integer(1))
    max_handshakes_per_ip: int = attrs.field(default=DEFAULT_MAX_HANDSHAKES_PER_IP, validator=_integer(1))
    #: The ``Origin`` values browsers may connect from, for routes that list none; empty: any.
    allowed_origins: tuple[str, ...] = attrs.field(default=(), converter=_to_tuple, validator=_check_origins)
    tls_cert_file: str | None = attrs.field(default=None, validator=_readable_file)
    tls_key_file: str | None = attrs.field(default=None, validator=_readable_file)
    tls_key_password: Secret | None = attrs.field(default=None, converter=_to_optional_secret, validator=_check_secret)
    #: The ops listener: ``/metrics`` (Prometheus), ``/healthz`` and ``/readyz``; None: not served (the
    #: two probes still answer on ``port``). 0 picks a free port.
    ops_host: str = attrs.field(default=DEFAULT_OPS_HOST, validator=_string(spaces=False))
    ops_port: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(_integer(0, 65535, " (0 picks a free port)"))
    )
    #: Routes shared by a fleet of proxies, in a compacted Kafka topic; None: the file's routes only.
    route_store: RouteStoreConfig | None = attrs.field(
        default=None,
        validator=lambda *args: _check_store(*args),  # below: it names RouteStoreConfig
    )
    #: Keys that may call the admin API on the ops port (``kafka-ws-trio hash-key`` makes one); none: no admin API.
    admin_keys: tuple[ApiKeyConfig, ...] = attrs.field(
        default=(), converter=_to_tuple, validator=_instances_of(ApiKeyConfig, "admin_keys tables")
    )
    #: Seconds between the checks that every route's brokers answer, which ``/readyz`` reports.
    ready_check_interval: float = attrs.field(
        default=DEFAULT_READY_CHECK_INTERVAL, validator=_seconds(0, inclusive=False)
    )
    #: Seconds a stopping proxy goes on serving, new sessions too, after ``/readyz`` turns 503 and before it
    #: drains its sessions: time for a load balancer's probe to see it and send clients elsewhere.
    shutdown_delay: float = attrs.field(default=0.0, validator=_seconds(0, inclusive=True))

    def __attrs_post_init__(self) -> None:
        _raise_all(_server_tls_problems(attrs.asdict(self, recurse=False)))

    @property
    def tls(self) -> bool:
        """Whether the listener speaks TLS (``wss://``)."""
        return self.tls_cert_file is not None


def _server_tls_problems(values: Mapping[str, Any]) -> Iterator[ConfigProblem]:
    """The problems across the [server] TLS values in *values*, which holds only the values fine on their own."""
    cert_file, key_file, key_password = (
        values.get(key) for key in ("tls_cert_file", "tls_key_file", "tls_key_password")
    )
    both_known = "tls_cert_file" in values and "tls_key_file" in values
    if both_known and cert_file is not None and key_file is None:
        yield ConfigProblem(
            "tls_cert_file", "needs tls_key_file, the private key of this certificate (set both, or neither)"
        )
    if both_known and key_file is not None and cert_file is None:
        yield ConfigProblem(
            "tls_key_file", "needs tls_cert_file, the certificate this key belongs to (set both, or neither)"
        )
    if both_known and key_password is not None and cert_file is None and key_file is None:
        yield ConfigProblem("tls_key_password", "is set but there is no tls_cert_file/tls_key_file to decrypt")
    if cert_file is not None and key_file is not None and "tls_key_password" in values:
        problem = _cert_chain_problem(cert_file, key_file, key_password, prefix="tls_", what="server certificate")
        if problem is not None:
            yield problem


class _EncryptedKey(Exception):
    """Raised by the password callback: without it OpenSSL would prompt on the terminal."""


def _no_key_password() -> str:
    raise _EncryptedKey


@attrs.frozen(kw_only=True)
class TlsConfig:
    """A route's ``tls`` table: TLS to the Kafka brokers (mutual TLS with a client certificate).

    Paths are used as given; the TOML reader makes them absolute. Every file
    must be readable PEM when the object is built. ``verify`` checks the
    broker's certificate and host name (the broker's host in ``nodes``)
    against ``ca_file``, or the system's CAs without one. ``key_password``
    decrypts an encrypted private key.
    """

    verify: bool = attrs.field(default=DEFAULT_TLS_VERIFY, validator=_boolean)
    ca_file: str | None = attrs.field(default=None, validator=_readable_file)
    cert_file: str | None = attrs.field(default=None, validator=_readable_file)
    key_file: str | None = attrs.field(default=None, validator=_readable_file)
    key_password: Secret | None = attrs.field(default=None, converter=_to_optional_secret, validator=_check_secret)

    def __attrs_post_init__(self) -> None:
        _raise_all(_tls_problems(attrs.asdict(self, recurse=False)))


def _tls_problems(values: Mapping[str, Any]) -> Iterator[ConfigProblem]:
    """The problems across a tls table's *values*, which holds only the values that are fine on their own."""
    cert_file, key_file, key_password = (values.get(key) for key in ("cert_file", "key_file", "key_password"))
    no_cert = "cert_file" in values and cert_file is None
    if key_file is not None and no_cert:
        yield ConfigProblem("key_file", "needs cert_file, the client certificate this key belongs to")
    if key_password is not None and no_cert:
        yield ConfigProblem("key_password", "is set but there is no cert_file/key_file to decrypt")
    ca_file = values.get("ca_file")
    if ca_file is not None and "verify" in values and not values["verify"]:
        yield ConfigProblem(
            "ca_file",
            "is set but verify is false, so the broker's certificate would not be checked; "
            "set verify = true, or remove ca_file",
        )
    elif ca_file is not None:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=ca_file)
        except OSError as exc:
            yield ConfigProblem("ca_file", f"{ca_file} holds no PEM CA certificate ({_ssl_reason(exc)})")
    if cert_file is not None and "key_file" in values and "key_password" in values:
        problem = _cert_chain_problem(cert_file, key_file, key_password)
        if problem is not None:
            yield problem


def _cert_chain_problem(
    cert_file: str,
    key_file: str | None,
    key_password: Secret | None,
    *,
    prefix: str = "",
    what: str = "client certificate",
) -> ConfigProblem | None:
    """Why the certificate and key do not load together, or None; *prefix* starts the keys named (``tls_``)."""
    key_key = f"{prefix}key_file" if key_file is not None else f"{prefix}cert_file"
    key_path = key_file or cert_file
    password = key_password.reveal if key_password is not None else _no_key_password
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert_file, key_file, password=password)
    except _EncryptedKey:
        return ConfigProblem(
            key_key, f"the private key in {key_path} is encrypted; set {prefix}key_password or {prefix}key_password_env"
        )
    except OSError as exc:
        return ConfigProblem(
            key_key,
            f"cannot load the {what} {cert_file} with the private key in {key_path} "
            f"({_ssl_reason(exc)}); both must be PEM, belong together, and {prefix}key_password must be right",
        )
    return None


def _ssl_reason(exc: OSError) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else str(exc.strerror or exc)


@attrs.frozen(kw_only=True)
class SaslConfig:
    """A route's ``sasl`` table: SASL authentication to the Kafka brokers.

    With ``tls`` the exchange is encrypted (SASL_SSL); without, it is not
    (SASL_PLAINTEXT), and PLAIN then sends the password in clear.
    """

    mechanism: str = attrs.field(default=DEFAULT_SASL_MECHANISM, validator=_choice(SASL_MECHANISMS))
    username: str = attrs.field(validator=_string(spaces=True))
    password: Secret = attrs.field(converter=_to_secret, validator=_check_secret)


def _check_store(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, RouteStoreConfig):
        raise ConfigError(f"expected a [server.route_store] table, got {_kind(value)}", key=attribute.name)


@attrs.frozen(kw_only=True)
class RouteStoreConfig:
    """The ``[server.route_store]`` table: routes shared by a fleet of proxies, in a compacted Kafka topic.

    Each record's key is a route's uri, its value the route's table as JSON (or a
    deletion); every proxy tails the topic and serves its file's routes with the
    topic's laid over them. The admin API writes there.
    """

    topic: str = attrs.field(validator=_string(spaces=False))
    nodes: tuple[str, ...] = attrs.field(converter=_to_nodes, validator=_check_nodes)
    tls: TlsConfig | None = attrs.field(default=None, validator=_instance_of(TlsConfig, "a TlsConfig or None"))
    sasl: SaslConfig | None = attrs.field(default=None, validator=_instance_of(SaslConfig, "a SaslConfig or None"))
    #: Copies of the topic Kafka keeps, when a proxy creates it (not when it exists); None: the broker's
    #: ``default.replication.factor``. A production fleet wants 3, so that the routes outlive a broker.
    replication_factor: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(_integer(1, 32767, " (copies of the topic)"))
    )


@attrs.frozen
class RouteConfig:
    """One ``[[routes]]`` table: a WebSocket path and the Kafka cluster behind it.

    ``RouteConfig(uri, nodes, *, tls=None, sasl=None, <tuning>=...)``; *nodes*
    may be a single ``"host:port"`` string or any list or tuple of them.
    """

    uri: str = attrs.field(validator=_check_uri)
    nodes: tuple[str, ...] = attrs.field(converter=_to_nodes, validator=_check_nodes)
    tls: TlsConfig | None = attrs.field(
        default=None, kw_only=True, validator=_instance_of(TlsConfig, "a TlsConfig or None")
    )
    sasl: SaslConfig | None = attrs.field(
        default=None, kw_only=True, validator=_instance_of(SaslConfig, "a SaslConfig or None")
    )
    request_timeout: float = attrs.field(
        default=DEFAULT_REQUEST_TIMEOUT, kw_only=True, validator=_seconds(0, inclusive=False)
    )
    fetch_max_wait: float = attrs.field(
        default=DEFAULT_FETCH_MAX_WAIT, kw_only=True, validator=_seconds(0, inclusive=True)
    )
    fetch_max_bytes: int = attrs.field(
        default=DEFAULT_FETCH_MAX_BYTES, kw_only=True, validator=_integer(1, note=" bytes")
    )
    idle_timeout: float = attrs.field(
        default=DEFAULT_IDLE_TIMEOUT, kw_only=True, validator=_seconds(0, inclusive=False)
    )
    cache_records: int = attrs.field(default=DEFAULT_CACHE_RECORDS, kw_only=True, validator=_integer(1))
    cache_bytes: int = attrs.field(default=DEFAULT_CACHE_BYTES, kw_only=True, validator=_integer(1, note=" bytes"))
    shared_body_bytes: int = attrs.field(
        default=DEFAULT_SHARED_BODY_BYTES, kw_only=True, validator=_integer(0, note=" bytes")
    )
    max_partition_readers: int = attrs.field(default=DEFAULT_MAX_PARTITION_READERS, kw_only=True, validator=_integer(1))
    max_streams: int = attrs.field(default=DEFAULT_MAX_STREAMS, kw_only=True, validator=_integer(1))
    max_stream_partitions: int = attrs.field(default=DEFAULT_MAX_STREAM_PARTITIONS, kw_only=True, validator=_integer(1))
    stream_credit_records: int = attrs.field(default=DEFAULT_STREAM_CREDIT_RECORDS, kw_only=True, validator=_integer(0))
    stream_credit_bytes: int = attrs.field(
        default=DEFAULT_STREAM_CREDIT_BYTES, kw_only=True, validator=_integer(0, note=" bytes")
    )
    fetch_isolation: str = attrs.field(
        default=DEFAULT_FETCH_ISOLATION, kw_only=True, validator=_choice(FETCH_ISOLATIONS)
    )
    produce: bool = attrs.field(default=DEFAULT_PRODUCE, kw_only=True, validator=_boolean)
    produce_acks: str = attrs.field(default=DEFAULT_PRODUCE_ACKS, kw_only=True, validator=_choice(PRODUCE_ACKS))
    produce_linger: float = attrs.field(
        default=DEFAULT_PRODUCE_LINGER, kw_only=True, validator=_seconds(0, inclusive=True)
    )
    produce_batch_bytes: int = attrs.field(
        default=DEFAULT_PRODUCE_BATCH_BYTES, kw_only=True, validator=_integer(1, note=" bytes")
    )
    produce_max_record_bytes: int = attrs.field(
        default=DEFAULT_PRODUCE_MAX_RECORD_BYTES, kw_only=True, validator=_integer(1, note=" bytes")
    )
    produce_session_records: int = attrs.field(
        default=DEFAULT_PRODUCE_SESSION_RECORDS, kw_only=True, validator=_integer(1)
    )
    produce_session_bytes: int = attrs.field(
        default=DEFAULT_PRODUCE_SESSION_BYTES, kw_only=True, validator=_integer(1, note=" bytes")
    )
    produce_route_records: int = attrs.field(default=DEFAULT_PRODUCE_ROUTE_RECORDS, kw_only=True, validator=_integer(1))
    produce_route_bytes: int = attrs.field(
        default=DEFAULT_PRODUCE_ROUTE_BYTES, kw_only=True, validator=_integer(1, note=" bytes")
    )
    transaction_producers: int = attrs.field(default=DEFAULT_TRANSACTION_PRODUCERS, kw_only=True, validator=_integer(0))
    transaction_timeout: float = attrs.field(
        default=DEFAULT_TRANSACTION_TIMEOUT, kw_only=True, validator=_seconds(0, inclusive=False)
    )
    #: None: ``<client_id>-<host name>-<process id>-``; the route's transactional.ids are this plus a number.
    transaction_id_prefix: str | None = attrs.field(
        default=None, kw_only=True, validator=attrs.validators.optional(_string(spaces=False))
    )
    groups: bool = attrs.field(default=DEFAULT_GROUPS, kw_only=True, validator=_boolean)
    max_group_members: int = attrs.field(default=DEFAULT_ROUTE_GROUP_MEMBERS, kw_only=True, validator=_integer(1))
    group_session_timeout: float = attrs.field(
        default=DEFAULT_GROUP_SESSION_TIMEOUT, kw_only=True, validator=_seconds(0, inclusive=False)
    )
    group_heartbeat_interval: float = attrs.field(
        default=DEFAULT_GROUP_HEARTBEAT_INTERVAL, kw_only=True, validator=_seconds(0, inclusive=False)
    )
    group_commit_interval: float = attrs.field(
        default=DEFAULT_GROUP_COMMIT_INTERVAL, kw_only=True, validator=_seconds(0, inclusive=False)
    )
    client_id: str = attrs.field(default=DEFAULT_CLIENT_ID, kw_only=True, validator=_string(spaces=False))
    #: How clients prove who they are (issue 13): any of "none", "api_key", "jwt".
    auth: tuple[str, ...] = attrs.field(
        default=DEFAULT_AUTH,
        kw_only=True,
        converter=_to_tuple,
        validator=_strings(choices=AUTH_METHODS, what="methods"),
    )
    api_keys: tuple[ApiKeyConfig, ...] = attrs.field(
        default=(), kw_only=True, converter=_to_tuple, validator=_instances_of(ApiKeyConfig, "api_keys tables")
    )
    jwt: JwtConfig | None = attrs.field(
        default=None, kw_only=True, validator=_instance_of(JwtConfig, "a JwtConfig or None")
    )
    #: None: every client the route admits may do everything on it; a tuple: only what a rule allows.
    acl: tuple[AclRuleConfig, ...] | None = attrs.field(
        default=None,
        kw_only=True,
        converter=_to_tuple,
        validator=attrs.validators.optional(_instances_of(AclRuleConfig, "acl tables")),
    )
    quotas: QuotaConfig | None = attrs.field(
        default=None, kw_only=True, validator=_instance_of(QuotaConfig, "a QuotaConfig or None")
    )
    #: The ``Origin`` values a browser may connect from; empty: any (non-browser clients send none).
    allowed_origins: tuple[str, ...] = attrs.field(
        default=(), kw_only=True, converter=_to_tuple, validator=_check_origins
    )
    #: None: every session reaches Kafka with the route's own login; else each principal with its own.
    kafka_credentials: KafkaCredentialsConfig | None = attrs.field(
        default=None,
        kw_only=True,
        validator=_instance_of(KafkaCredentialsConfig, "a KafkaCredentialsConfig or None"),
    )

    def __attrs_post_init__(self) -> None:
        _raise_all(_route_problems(attrs.asdict(self, recurse=False)))

    @property
    def kafka_mechanism(self) -> str:
        """The SASL mechanism of the principals' own Kafka logins (``kafka_credentials``)."""
        if self.kafka_credentials is not None and self.kafka_credentials.mechanism is not None:
            return self.kafka_credentials.mechanism
        return self.sasl.mechanism if self.sasl is not None else DEFAULT_SASL_MECHANISM

    @property
    def security_protocol(self) -> Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]:
        """Kafka's name for this route's combination of TLS and SASL."""
        if self.sasl is None:
            return "PLAINTEXT" if self.tls is None else "SSL"
        return "SASL_PLAINTEXT" if self.tls is None else "SASL_SSL"


def _route_problems(values: Mapping[str, Any]) -> Iterator[ConfigProblem]:
    """The problems across a route's *values*, which holds only the values that are fine on their own."""
    yield from _auth_problems(values)
    if "fetch_max_wait" in values and "request_timeout" in values:
        wait, timeout = values["fetch_max_wait"], values["request_timeout"]
        if wait >= timeout:
            # A fetch waiting that long for new records would always miss its own deadline.
            yield ConfigProblem(
                "fetch_max_wait", f"{wait!r} is too long; it must be less than request_timeout ({timeout!r} s)"
            )
    if "cache_bytes" in values and "fetch_max_bytes" in values:
        window, poll = values["cache_bytes"], values["fetch_max_bytes"]
        if window < poll:
            # One poll would not fit in the window: every fetch would poll Kafka again.
            yield ConfigProblem(
                "cache_bytes", f"{window!r} is too small; it must be at least fetch_max_bytes ({poll!r})"
            )

    if "group_heartbeat_interval" in values and "group_session_timeout" in values:
        beat, timeout = values["group_heartbeat_interval"], values["group_session_timeout"]
        if beat >= timeout:
            # Kafka would drop every member between two of its heartbeats.
            yield ConfigProblem(
                "group_heartbeat_interval",
                f"{beat!r} is too long; it must be less than group_session_timeout ({timeout!r} s)",
            )
    for kind in ("records", "bytes"):
        session, route = f"produce_session_{kind}", f"produce_route_{kind}"
        if session in values and route in values and values[session] > values[route]:
            # A session could never have its own bound in flight.
            yield ConfigProblem(
                session, f"{values[session]!r} is too large; it must be at most {route} ({values[route]!r})"
            )


def _auth_problems(values: Mapping[str, Any]) -> Iterator[ConfigProblem]:
    """A method of ``auth`` without its settings, or settings for a method ``auth`` does not take."""
    if "auth" not in values:
        return
    methods = values["auth"]
    for method, key, example in (
        ("api_key", "api_keys", "[[routes.api_keys]] tables (kafka-ws-trio hash-key makes one)"),
        ("jwt", "jwt", "a [routes.jwt] table"),
    ):
        if key not in values:
            continue
        configured = bool(values[key])
        if method in methods and not configured:
            yield ConfigProblem("auth", f"takes {method!r}, but the route has no {key}; add {example}")
        elif configured and method not in methods:
            yield ConfigProblem(key, f"is set, but auth does not take {method!r}; add it to auth, or remove {key}")
    yield from check_key_ids(values.get("api_keys", ()))


def _same_uri(uri: str, first: int) -> str:
    return f"{_quote(uri)} is already the uri of routes[{first}]; each path serves one route"


def _to_routes(value: Iterable[RouteConfig]) -> tuple[RouteConfig, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return value  # type: ignore[return-value]  # not a sequence: _check_routes reports it


def _check_routes(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, tuple):
        raise ConfigError(f"expected an array of routes, got {_kind(value)}", key=attribute.name)
    if not value:
        raise ConfigError(_NO_ROUTES, key=attribute.name)
    problems = []
    first_seen: dict[str, int] = {}
    for index, route in enumerate(value):
        key = f"{attribute.name}[{index}]"
        if not isinstance(route, RouteConfig):
            problems.append(ConfigProblem(key, f"expected a RouteConfig, got {_kind(route)}"))
        elif route.uri in first_seen:
            problems.append(ConfigProblem(f"{key}.uri", _same_uri(route.uri, first_seen[route.uri])))
        else:
            first_seen[route.uri] = index
    _raise_all(problems)


@attrs.frozen
class ProxyConfig:
    """The whole configuration: ``ProxyConfig(server, routes)``.

    Build one with :func:`load_config`, :func:`parse_config` or
    :meth:`single_route`. *routes* may be any list or tuple of
    :class:`RouteConfig`; it must hold at least one, with distinct uris.
    """

    server: ServerConfig = attrs.field(validator=_instance_of(ServerConfig, "a ServerConfig"))
    routes: tuple[RouteConfig, ...] = attrs.field(converter=_to_routes, validator=_check_routes)

    @classmethod
    def single_route(
        cls,
        nodes: str | Iterable[str],
        uri: str = DEFAULT_URI,
        *,
        tls: TlsConfig | None = None,
        sasl: SaslConfig | None = None,
        server: ServerConfig | None = None,
        **route_options: float | str,
    ) -> ProxyConfig:
        """A config with one route, built in code (for embedding and tests).

        Args:
            nodes: The bootstrap brokers, ``"host:port"`` or a list of them.
            uri: The route's WebSocket path.
            tls: TLS to Kafka, or None for plaintext.
            sasl: SASL authentication to Kafka, or None.
            server: The server settings; default :class:`ServerConfig()`.
            **route_options: Any other :class:`RouteConfig` field, e.g.
                ``request_timeout=1.0``.

        Raises:
            ConfigError: A value is not allowed.
            TypeError: An unknown keyword.
        """
        route = RouteConfig(uri, nodes, tls=tls, sasl=sasl, **route_options)  # type: ignore[arg-type]
        return cls(ServerConfig() if server is None else server, (route,))

    def route_for(self, path: str) -> RouteConfig | None:
        """The route whose uri is exactly *path*, or None."""
        for route in self.routes:
            if route.uri == path:
                return route
        return None
