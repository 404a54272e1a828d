"""The proxy's configuration: one TOML file, checked completely before anything starts.

A config has one ``[server]`` table and one ``[[routes]]`` table per WebSocket
path. Each route names the Kafka cluster behind it the way an Apache APISIX
route does (``nodes``, ``tls``, ``sasl``) plus per-route Kafka tuning. See
``examples/proxy.toml`` for every key with its default.

Everything here is plain data and pure checking: no Trio, no Kafka. The only
I/O is reading the config file, the environment variables that hold secrets,
and the TLS files a route names (they must exist, be readable and parse as
PEM when the config is loaded, not at the first connection).

The classes validate themselves, so a config built in code (for embedding, or
in tests) gets the same checks as one read from a file. A bad value raises
:class:`ConfigError`, whose message reads
``proxy.toml: routes[0].nodes[1]: "localhost" is not host:port ...``:
the file, the key path, the problem and what is allowed. Passwords are kept
in :class:`Secret`, which never shows its value in a repr, a log line or an
error message.
"""

from __future__ import annotations

import datetime
import difflib
import ipaddress
import json
import math
import os
import re
import ssl
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

import attrs

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

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
#: Open WebSocket sessions, all routes together.
DEFAULT_MAX_SESSIONS: Final = 10_000
DEFAULT_LOG_LEVEL: Final = "INFO"
LOG_LEVELS: Final = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")

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

_NO_ROUTES: Final = 'no routes; add at least one [[routes]] table with a uri and nodes, e.g. uri = "/kafka"'
_NODE_EXAMPLE: Final = '(e.g. "127.0.0.1:9092" or "[::1]:9092")'
_NODE: Final = re.compile(r"(?:\[(?P<ipv6>[^\]]+)\]|(?P<host>[A-Za-z0-9_.-]+)):(?P<port>[0-9]{1,5})")
_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ConfigError(Exception):
    """The configuration is not usable; the message says where and why.

    ``str(error)`` reads ``<source>: <key path>: <problem>``, for example
    ``proxy.toml: routes[1].sasl.mechanism: "SCRAM" is not supported; expected
    one of ...``. The parts are also available on their own.

    Attributes:
        problem: What is wrong and what is allowed instead.
        key: The key path such as ``routes[0].nodes[1]``, or ``""`` when the
            problem is the file as a whole.
        source: The config file's name, or ``""`` for a config built in code.
    """

    def __init__(self, problem: str, *, key: str = "", source: str = "") -> None:
        self.problem = problem
        self.key = key
        self.source = source
        super().__init__(": ".join(part for part in (source, key, problem) if part))

    def _within(self, key: str = "", source: str = "") -> ConfigError:
        return ConfigError(self.problem, key=_join_keys(key, self.key), source=source or self.source)


class Secret:
    """A password that stays out of reprs, logs and error messages.

    ``repr()`` and ``str()`` both give ``Secret('***')``; :meth:`reveal` is the
    one way to the value, for handing it to the Kafka client. Two secrets are
    equal when their values are.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("a Secret holds a str")
        self._value = value

    @classmethod
    def from_env(cls, name: str, environ: Mapping[str, str] | None = None) -> Secret:
        """Read a secret from the environment variable *name*.

        Raises:
            ConfigError: The variable is not set, or is empty.
        """
        value = (os.environ if environ is None else environ).get(name)
        if value is None:
            raise ConfigError(f"environment variable {_quote(name)} is not set")
        if not value:
            raise ConfigError(f"environment variable {_quote(name)} is empty")
        return cls(value)

    def reveal(self) -> str:
        """Return the secret itself."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return self._value == other._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash((Secret, self._value))


# ---- checks shared by the classes and the TOML reader ---------------------------------------------

_Validator: TypeAlias = "Callable[[Any, attrs.Attribute[Any], Any], None]"


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _join_keys(outer: str, inner: str) -> str:
    if not outer or not inner:
        return outer or inner
    return outer + inner if inner.startswith("[") else f"{outer}.{inner}"


def _kind(value: object) -> str:
    """Name a value's type in TOML's words, never showing the value (it may be a secret)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string" if value else "an empty string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (datetime.date, datetime.time)):
        return "a date/time"
    return f"a {type(value).__name__}"


def _integer(low: int, high: int = MAX_INT32, note: str = "") -> _Validator:
    allowed = f"an integer from {low} to {high}{note}"

    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        # bool is an int subclass; "port = true" is a mistake, not port 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"expected {allowed}, got {_kind(value)}", key=attribute.name)
        if not low <= value <= high:
            raise ConfigError(f"{value} is out of range; expected {allowed}", key=attribute.name)

    return check


def _seconds(low: float, *, inclusive: bool) -> _Validator:
    allowed = f"a number of seconds {'>=' if inclusive else '>'} {low:g} and <= {MAX_SECONDS:g}"

    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"expected {allowed}, got {_kind(value)}", key=attribute.name)
        in_range = (low <= value if inclusive else low < value) and value <= MAX_SECONDS
        if not math.isfinite(value) or not in_range:
            raise ConfigError(f"{value!r} is out of range; expected {allowed}", key=attribute.name)

    return check


def _string(*, spaces: bool) -> _Validator:
    allowed = "a non-empty string" if spaces else "a non-empty string without spaces"

    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"expected {allowed}, got {_kind(value)}", key=attribute.name)
        if _CONTROL.search(value) or (not spaces and any(ch.isspace() for ch in value)):
            raise ConfigError(f"{_quote(value)} is not allowed; expected {allowed}", key=attribute.name)

    return check


def _choice(choices: tuple[str, ...]) -> _Validator:
    allowed = "one of " + ", ".join(_quote(choice) for choice in choices)

    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, str):
            raise ConfigError(f"expected {allowed}, got {_kind(value)}", key=attribute.name)
        if value not in choices:
            raise ConfigError(
                f"{_quote(value)} is not supported; {_suggest(value.upper(), choices)}expected {allowed}",
                key=attribute.name,
            )

    return check


def _suggest(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"did you mean {_quote(close[0])}? " if close else ""


def _boolean(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"expected true or false, got {_kind(value)}", key=attribute.name)


def _instance_of(cls: type, what: str) -> _Validator:
    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is not None and not isinstance(value, cls):
            raise ConfigError(f"expected {what}, got {_kind(value)}", key=attribute.name)

    return check


def _readable_file(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value:
        raise ConfigError(f"expected a file path, got {_kind(value)}", key=attribute.name)
    try:
        mode = os.stat(value).st_mode
    except FileNotFoundError:
        raise ConfigError(f"no such file: {value}", key=attribute.name) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {value}: {exc.strerror}", key=attribute.name) from None
    if not stat.S_ISREG(mode):
        # Opening a FIFO or a device to test it could block, so only regular files pass.
        raise ConfigError(f"{value} is not a regular file", key=attribute.name)
    try:
        with open(value, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot read {value}: {exc.strerror}", key=attribute.name) from None


def _check_secret(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None and attribute.default is None:
        return
    if not isinstance(value, Secret):
        raise ConfigError(f"expected a string, got {_kind(value)}", key=attribute.name)
    if not value.reveal():
        raise ConfigError("must not be empty", key=attribute.name)


def _to_secret(value: str | Secret) -> Secret:
    # Anything else passes through unchanged for _check_secret to report under its key.
    return Secret(value) if isinstance(value, str) else value


def _to_optional_secret(value: str | Secret | None) -> Secret | None:
    return Secret(value) if isinstance(value, str) else value


def _node_problem(node: object) -> str | None:
    if not isinstance(node, str):
        return f'expected a "host:port" string, got {_kind(node)}'
    match = _NODE.fullmatch(node)
    if match is None:
        return f"{_quote(node)} is not host:port {_NODE_EXAMPLE}"
    if match["ipv6"] is not None:
        try:
            ipaddress.IPv6Address(match["ipv6"])
        except ValueError:
            return f"{_quote(node)}: {_quote(match['ipv6'])} is not an IPv6 address {_NODE_EXAMPLE}"
    if not 1 <= int(match["port"]) <= 65535:
        return f"{_quote(node)}: port {int(match['port'])} is out of range; expected 1 to 65535"
    return None


def _to_nodes(value: str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return value  # type: ignore[return-value]  # not an array: _check_nodes reports it


def _check_nodes(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, tuple):
        raise ConfigError(f'expected an array of "host:port" strings, got {_kind(value)}', key=attribute.name)
    if not value:
        raise ConfigError(
            f'is empty; list at least one bootstrap broker as "host:port" {_NODE_EXAMPLE}', key=attribute.name
        )
    first_seen: dict[str, int] = {}
    for index, node in enumerate(value):
        key = f"{attribute.name}[{index}]"
        problem = _node_problem(node)
        if problem is not None:
            raise ConfigError(problem, key=key)
        if node in first_seen:
            raise ConfigError(f"{_quote(node)} is listed twice (also at nodes[{first_seen[node]}])", key=key)
        first_seen[node] = index


def _check_uri(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise ConfigError(f'expected a path such as "/kafka", got {_kind(value)}', key=attribute.name)
    if not value.startswith("/"):
        raise ConfigError(f'{_quote(value)} must start with "/" (e.g. "/kafka")', key=attribute.name)
    if _CONTROL.search(value) or any(ch.isspace() or ch in "?#" for ch in value):
        raise ConfigError(
            f'{_quote(value)} may not contain spaces, "?" or "#"; it is matched against the request path',
            key=attribute.name,
        )


# ---- the configuration -----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ServerConfig:
    """The ``[server]`` table: where the proxy listens and its global limits.

    In the worst case one session holds ``queue_size`` received frames and
    ``workers`` responses, each at most ``max_message_size`` bytes.
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
    log_level: str = attrs.field(default=DEFAULT_LOG_LEVEL, validator=_choice(LOG_LEVELS))


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
        if self.key_file is not None and self.cert_file is None:
            raise ConfigError("needs cert_file, the client certificate this key belongs to", key="key_file")
        if self.key_password is not None and self.cert_file is None:
            raise ConfigError("is set but there is no cert_file/key_file to decrypt", key="key_password")
        if self.ca_file is not None and not self.verify:
            raise ConfigError(
                "is set but verify is false, so the broker's certificate would not be checked; "
                "set verify = true, or remove ca_file",
                key="ca_file",
            )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if self.ca_file is not None:
            try:
                context.load_verify_locations(cafile=self.ca_file)
            except OSError as exc:
                raise ConfigError(
                    f"{self.ca_file} holds no PEM CA certificate ({_ssl_reason(exc)})", key="ca_file"
                ) from None
        if self.cert_file is not None:
            self._check_cert_chain(context, self.cert_file)

    def _check_cert_chain(self, context: ssl.SSLContext, cert_file: str) -> None:
        key_key = "key_file" if self.key_file is not None else "cert_file"
        key_file = self.key_file or cert_file
        password = self.key_password.reveal if self.key_password is not None else _no_key_password
        try:
            context.load_cert_chain(cert_file, self.key_file, password=password)
        except _EncryptedKey:
            raise ConfigError(
                f"the private key in {key_file} is encrypted; set key_password or key_password_env", key=key_key
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"cannot load the client certificate {cert_file} with the private key in {key_file} "
                f"({_ssl_reason(exc)}); both must be PEM, belong together, and key_password must be right",
                key=key_key,
            ) from None


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
    client_id: str = attrs.field(default=DEFAULT_CLIENT_ID, kw_only=True, validator=_string(spaces=False))

    def __attrs_post_init__(self) -> None:
        if self.fetch_max_wait >= self.request_timeout:
            # A fetch waiting that long for new records would always miss its own deadline.
            raise ConfigError(
                f"{self.fetch_max_wait!r} is too long; it must be less than request_timeout "
                f"({self.request_timeout!r} s)",
                key="fetch_max_wait",
            )

    @property
    def security_protocol(self) -> Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]:
        """Kafka's name for this route's combination of TLS and SASL."""
        if self.sasl is None:
            return "PLAINTEXT" if self.tls is None else "SSL"
        return "SASL_PLAINTEXT" if self.tls is None else "SASL_SSL"


def _to_routes(value: Iterable[RouteConfig]) -> tuple[RouteConfig, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return value  # type: ignore[return-value]  # not a sequence: _check_routes reports it


def _check_routes(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, tuple):
        raise ConfigError(f"expected an array of routes, got {_kind(value)}", key=attribute.name)
    if not value:
        raise ConfigError(_NO_ROUTES, key=attribute.name)
    first_seen: dict[str, int] = {}
    for index, route in enumerate(value):
        key = f"{attribute.name}[{index}]"
        if not isinstance(route, RouteConfig):
            raise ConfigError(f"expected a RouteConfig, got {_kind(route)}", key=key)
        if route.uri in first_seen:
            raise ConfigError(
                f"{_quote(route.uri)} is already the uri of routes[{first_seen[route.uri]}]; "
                "each path serves one route",
                key=f"{key}.uri",
            )
        first_seen[route.uri] = index


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


# ---- reading TOML ----------------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str]) -> ProxyConfig:
    """Read and check the TOML config file at *path*.

    Relative file paths inside it (``ca_file``, ``cert_file``, ``key_file``)
    are taken relative to the folder holding the file (``~`` is expanded),
    and must be readable PEM files when it is loaded. Secrets named by
    ``*_env`` keys are read from ``os.environ``.

    Raises:
        ConfigError: The file cannot be read, is not TOML, or holds a value
            that is not allowed. The message starts with *path*.
    """
    source = os.fspath(path)
    try:
        data = Path(source).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the config file: {exc.strerror or exc}", source=source) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"invalid TOML: not UTF-8 text (byte {exc.start})", source=source) from None
    return parse_config(text, source=source, base_dir=Path(source).parent)


def parse_config(
    text: str,
    *,
    source: str = "<string>",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> ProxyConfig:
    """Check a config given as TOML text.

    Args:
        text: The TOML document.
        source: The name error messages start with.
        base_dir: Where relative file paths start; default the current folder.
        environ: Where ``*_env`` keys look; default ``os.environ``.

    Raises:
        ConfigError: The text is not TOML, or holds a value that is not allowed.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message names the line and column, never the text itself.
        raise ConfigError(f"invalid TOML: {exc}", source=source) from None
    reader = _Reader(Path.cwd() if base_dir is None else Path(base_dir), os.environ if environ is None else environ)
    with _at("", source=source):
        return reader.proxy(document)


_SERVER_KEYS: Final = tuple(field.name for field in attrs.fields(ServerConfig))
_ROUTE_KEYS: Final = tuple(field.name for field in attrs.fields(RouteConfig))
_TLS_KEYS: Final = (*(field.name for field in attrs.fields(TlsConfig)), "key_password_env")
_SASL_KEYS: Final = (*(field.name for field in attrs.fields(SaslConfig)), "password_env")
_TLS_PATHS: Final = ("ca_file", "cert_file", "key_file")


@contextmanager
def _at(key: str, *, source: str = "") -> Iterator[None]:
    """Put *key* in front of the key path of a ConfigError raised inside (and *source*)."""
    try:
        yield
    except ConfigError as exc:
        if exc.source:
            raise
        raise exc._within(key, source) from None


def _check_keys(table: Mapping[str, object], known: tuple[str, ...]) -> None:
    for key in table:
        if key not in known:
            name = key if _BARE_KEY.fullmatch(key) else _quote(key)
            raise ConfigError(f"unknown key; {_suggest(key, known)}known keys: {', '.join(known)}", key=name)


def _require(table: Mapping[str, object], key: str, hint: str) -> None:
    if key not in table:
        raise ConfigError(f"missing; {hint}", key=key)


@attrs.frozen
class _Reader:
    base_dir: Path
    environ: Mapping[str, str]

    def proxy(self, document: dict[str, Any]) -> ProxyConfig:
        _check_keys(document, ("server", "routes"))
        server_table = document.get("server", {})
        with _at("server"):
            if not isinstance(server_table, dict):
                raise ConfigError(f"expected a table ([server]), got {_kind(server_table)}")
            _check_keys(server_table, _SERVER_KEYS)
            server = ServerConfig(**server_table)
        routes = document.get("routes", [])
        if not isinstance(routes, list):
            raise ConfigError(f"expected an array of tables ([[routes]]), got {_kind(routes)}", key="routes")
        built = []
        for index, table in enumerate(routes):
            with _at(f"routes[{index}]"):
                built.append(self.route(table))
        return ProxyConfig(server, built)

    def route(self, table: object) -> RouteConfig:
        if not isinstance(table, dict):
            raise ConfigError(f"expected a table, got {_kind(table)}")
        _check_keys(table, _ROUTE_KEYS)
        _require(table, "uri", 'every route needs its WebSocket path, e.g. uri = "/kafka"')
        _require(table, "nodes", 'every route needs its bootstrap brokers, e.g. nodes = ["127.0.0.1:9092"]')
        options = dict(table)
        with _at("tls"):
            options["tls"] = self.tls(options.get("tls", False))
        with _at("sasl"):
            options["sasl"] = self.sasl(options.get("sasl"))
        return RouteConfig(**options)

    def tls(self, value: object) -> TlsConfig | None:
        if value is False:
            return None
        if value is True:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"expected a table such as {{ verify = true }}, or true/false, got {_kind(value)}")
        _check_keys(value, _TLS_KEYS)
        options = dict(value)
        for key in _TLS_PATHS:
            if key in options:
                options[key] = self.path(options[key], key)
        options["key_password"] = self.secret(options, "key_password", required=False)
        return TlsConfig(**options)

    def sasl(self, value: object) -> SaslConfig | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ConfigError(
                f'expected a table such as {{ username = "u", password_env = "KAFKA_PASSWORD" }}, got {_kind(value)}'
            )
        _check_keys(value, _SASL_KEYS)
        _require(value, "username", "SASL needs a username")
        options = dict(value)
        options["password"] = self.secret(options, "password", required=True)
        return SaslConfig(**options)

    def path(self, value: object, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"expected a file path, got {_kind(value)}", key=key)
        # abspath, not resolve(): a symlink (e.g. a Kubernetes secret mount) must stay a
        # symlink so that a rotated certificate is picked up where it is linked.
        return os.path.abspath(self.base_dir / Path(value).expanduser())

    def secret(self, options: dict[str, Any], key: str, *, required: bool) -> Secret | None:
        """Take *key* or *key*_env out of *options*, as a Secret."""
        env_key = f"{key}_env"
        if key in options and env_key in options:
            raise ConfigError(f"set {key} or {env_key}, not both", key=env_key)
        if env_key in options:
            name = options.pop(env_key)
            if not isinstance(name, str):
                raise ConfigError(f"expected the name of an environment variable, got {_kind(name)}", key=env_key)
            if not _ENV_NAME.fullmatch(name):
                # Not echoed: a password pasted here by mistake must not reach the logs.
                raise ConfigError(
                    "is not the name of an environment variable (letters, digits and _, not starting with a digit)",
                    key=env_key,
                )
            with _at(env_key):
                return Secret.from_env(name, self.environ)
        if key in options:
            value = options.pop(key)
            if not isinstance(value, str):
                raise ConfigError(f"expected a string, got {_kind(value)}", key=key)
            return Secret(value)
        if required:
            raise ConfigError(
                f"missing; set {key}, or {env_key} to the name of an environment variable holding it", key=key
            )
        return None
