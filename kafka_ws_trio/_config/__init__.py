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
in tests) gets the same checks as one read from a file. Bad values raise
:class:`ConfigError`, whose message has a line per problem, such as
``proxy.toml: routes[0].nodes[1]: "localhost" is not host:port ...``:
the file, the key path, the problem and what is allowed. A file is read
whole, so every independent mistake in it is reported at once (up to
:data:`MAX_REPORTED_PROBLEMS`), each as a :class:`ConfigProblem`. Passwords are kept
in :class:`Secret`, which never shows its value in a repr, a log line or an
error message.

One module per concern: ``_defaults`` (the named defaults and bounds),
``_errors`` (:class:`ConfigError`, its problems and the wording of its messages),
``_secret`` (:class:`Secret`), ``_checks`` (the validators and converters the
classes run on each value), ``_model`` (the classes) and ``_toml`` (reading a
file or text: unknown keys, relative paths, ``*_env`` secrets, key paths in
messages). This module re-exports what the rest of the package and the tests use.
"""

from ._defaults import DEFAULT_CACHE_BYTES as DEFAULT_CACHE_BYTES
from ._defaults import DEFAULT_CACHE_RECORDS as DEFAULT_CACHE_RECORDS
from ._defaults import DEFAULT_CLIENT_ID as DEFAULT_CLIENT_ID
from ._defaults import DEFAULT_FETCH_MAX_BYTES as DEFAULT_FETCH_MAX_BYTES
from ._defaults import DEFAULT_FETCH_MAX_WAIT as DEFAULT_FETCH_MAX_WAIT
from ._defaults import DEFAULT_GRACE_PERIOD as DEFAULT_GRACE_PERIOD
from ._defaults import DEFAULT_HOST as DEFAULT_HOST
from ._defaults import DEFAULT_IDLE_TIMEOUT as DEFAULT_IDLE_TIMEOUT
from ._defaults import DEFAULT_KAFKA_THREADS as DEFAULT_KAFKA_THREADS
from ._defaults import DEFAULT_LOG_LEVEL as DEFAULT_LOG_LEVEL
from ._defaults import DEFAULT_MAX_MESSAGE_SIZE as DEFAULT_MAX_MESSAGE_SIZE
from ._defaults import DEFAULT_MAX_PARTITION_READERS as DEFAULT_MAX_PARTITION_READERS
from ._defaults import DEFAULT_MAX_SESSIONS as DEFAULT_MAX_SESSIONS
from ._defaults import DEFAULT_MAX_STREAM_PARTITIONS as DEFAULT_MAX_STREAM_PARTITIONS
from ._defaults import DEFAULT_MAX_STREAMS as DEFAULT_MAX_STREAMS
from ._defaults import DEFAULT_PORT as DEFAULT_PORT
from ._defaults import DEFAULT_QUEUE_SIZE as DEFAULT_QUEUE_SIZE
from ._defaults import DEFAULT_REQUEST_TIMEOUT as DEFAULT_REQUEST_TIMEOUT
from ._defaults import DEFAULT_SASL_MECHANISM as DEFAULT_SASL_MECHANISM
from ._defaults import DEFAULT_SEND_TIMEOUT as DEFAULT_SEND_TIMEOUT
from ._defaults import DEFAULT_SHARED_BODY_BYTES as DEFAULT_SHARED_BODY_BYTES
from ._defaults import DEFAULT_STREAM_CREDIT_BYTES as DEFAULT_STREAM_CREDIT_BYTES
from ._defaults import DEFAULT_STREAM_CREDIT_RECORDS as DEFAULT_STREAM_CREDIT_RECORDS
from ._defaults import DEFAULT_TLS_VERIFY as DEFAULT_TLS_VERIFY
from ._defaults import DEFAULT_URI as DEFAULT_URI
from ._defaults import DEFAULT_WORKERS as DEFAULT_WORKERS
from ._defaults import LOG_LEVELS as LOG_LEVELS
from ._defaults import MAX_INT32 as MAX_INT32
from ._defaults import MAX_SECONDS as MAX_SECONDS
from ._defaults import MIN_MAX_MESSAGE_SIZE as MIN_MAX_MESSAGE_SIZE
from ._defaults import SASL_MECHANISMS as SASL_MECHANISMS
from ._errors import MAX_REPORTED_PROBLEMS as MAX_REPORTED_PROBLEMS
from ._errors import ConfigError as ConfigError
from ._errors import ConfigProblem as ConfigProblem
from ._model import ProxyConfig as ProxyConfig
from ._model import RouteConfig as RouteConfig
from ._model import RouteStoreConfig as RouteStoreConfig
from ._model import SaslConfig as SaslConfig
from ._model import ServerConfig as ServerConfig
from ._model import TlsConfig as TlsConfig
from ._secret import Secret as Secret
from ._toml import _ROUTE_KEYS as _ROUTE_KEYS
from ._toml import _SASL_KEYS as _SASL_KEYS
from ._toml import _SERVER_KEYS as _SERVER_KEYS
from ._toml import _TLS_KEYS as _TLS_KEYS
from ._toml import load_config as load_config
from ._toml import parse_config as parse_config
